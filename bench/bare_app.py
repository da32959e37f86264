"""Baseline for bench/webhooks.py: the least a webhook endpoint can do (HMAC over the raw body,
JSON parse, a small JSON answer) on bare Starlette under the same uvicorn."""

from __future__ import annotations

import hashlib
import hmac
import json
import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

SECRET = os.environ.get("BENCH_SECRET", "bench-secret").encode()


async def hook(request: Request) -> Response:
    body = await request.body()
    sig = request.headers.get("x-hub-signature-256", "")[7:]
    if not hmac.compare_digest(hmac.new(SECRET, body, hashlib.sha256).hexdigest(), sig):
        return JSONResponse({"detail": "bad signature"}, status_code=401)
    payload = json.loads(body)
    return JSONResponse({"outcome": "ignored", "action": payload.get("action")}, status_code=202)


async def live(request: Request) -> Response:
    return JSONResponse({"status": "alive"})


app = Starlette(routes=[Route("/webhooks/github", hook, methods=["POST"]), Route("/live", live)])
