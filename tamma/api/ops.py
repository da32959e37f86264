"""/live, /health, /ready, /metrics: not behind JWT, cheap enough to poll."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client

router = APIRouter(tags=["operations"])


class TemporalProbe:
    """Remembers the last answer from Temporal so /health answers in microseconds."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.reachable: bool | None = None
        self.checked_at = 0.0
        self.error = ""

    async def check(self, timeout_s: float = 2.0) -> bool:
        try:
            await self.client.workflow_service.get_system_info(
                GetSystemInfoRequest(), timeout=timedelta(seconds=timeout_s)
            )
            self.reachable, self.error = True, ""
        except Exception as exc:  # any failure means "not reachable"; the reason is reported
            self.reachable, self.error = False, str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        self.checked_at = time.time()
        return self.reachable

    async def loop(self, every_s: float = 5.0) -> None:
        while True:
            await self.check()
            await asyncio.sleep(every_s)


@router.get("/live", summary="The process is up")
async def live() -> dict[str, str]:
    return {"status": "alive"}


@router.get("/health", summary="Temporal and settings status, from the last probe")
async def health(request: Request) -> JSONResponse:
    probe: TemporalProbe = request.app.state.probe
    temporal = {None: "unknown", True: "reachable", False: "unreachable"}[probe.reachable]
    body = {
        "status": "ok" if probe.reachable else "degraded",
        "temporal": temporal,
        "temporal_checked_at": probe.checked_at,
        "settings": "ok",
        "webhooks": {
            "github": "on" if request.app.state.settings.webhooks.github_secrets else "off (no secret)",
            "gitlab": "on" if request.app.state.settings.webhooks.gitlab_tokens else "off (no token)",
        },
    }
    return JSONResponse(body)


@router.get("/ready", summary="Ready when Temporal answers now")
async def ready(request: Request) -> JSONResponse:
    probe: TemporalProbe = request.app.state.probe
    ok = await probe.check()
    return JSONResponse({"ready": ok, "temporal": "reachable" if ok else probe.error}, status_code=200 if ok else 503)


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
