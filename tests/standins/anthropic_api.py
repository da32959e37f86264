"""The parts of the Anthropic Messages API Tamma uses (POST /v1/messages), as documented: the
API key (x-api-key, or a bearer token as the installed SDK sends it), the anthropic-version
header, tool_use / tool_result pairing, usage fields with cache counters, and error bodies
{"type": "error", "error": {"type", "message"}}."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from tests.standins.http import Reply, Request, replay

_ids = itertools.count(1)


def message(
    content: list[dict[str, Any]],
    stop_reason: str = "end_turn",
    *,
    input_tokens: int = 100,
    output_tokens: int = 20,
    cache_read: int = 0,
    cache_write: int = 0,
    model: str = "claude-test",
) -> dict[str, Any]:
    return {
        "id": f"msg_{next(_ids):04d}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": cache_write,
            "cache_read_input_tokens": cache_read,
        },
    }


def tool_use(name: str, input: dict[str, Any], id: str | None = None) -> dict[str, Any]:
    return {"type": "tool_use", "id": id or f"toolu_{next(_ids):04d}", "name": name, "input": input}


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def error(status: int, kind: str, msg: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, {"type": "error", "error": {"type": kind, "message": msg}}, headers or {})


def protocol_problem(req: Request, api_key: str) -> Reply | None:
    """What the real API would refuse before looking at the content."""
    if req.path != "/v1/messages":
        return error(404, "not_found_error", f"no route {req.path}")
    # Older SDKs send x-api-key; the SDK installed here sends the key as a bearer token.
    sent = req.headers.get("x-api-key") or req.headers.get("authorization", "").removeprefix("Bearer ")
    if sent != api_key:
        return error(401, "authentication_error", "invalid x-api-key")
    if not req.headers.get("anthropic-version"):
        return error(400, "invalid_request_error", "anthropic-version header is required")
    body = req.json
    for key in ("model", "max_tokens", "messages"):
        if key not in body:
            return error(400, "invalid_request_error", f"{key}: Field required")
    msgs = body["messages"]
    for prev, cur in itertools.pairwise(msgs):
        if prev["role"] == cur["role"]:
            return error(400, "invalid_request_error", "roles must alternate between user and assistant")
        if prev["role"] == "assistant" and isinstance(prev["content"], list):
            wanted = {b["id"] for b in prev["content"] if b["type"] == "tool_use"}
            got = (
                {b.get("tool_use_id") for b in cur["content"] if isinstance(b, dict) and b["type"] == "tool_result"}
                if isinstance(cur["content"], list)
                else set()
            )
            if wanted - got:
                return error(400, "invalid_request_error", f"tool_use ids without tool_result: {sorted(wanted - got)}")
    return None


def scripted(replies: list[Reply | dict[str, Any]], api_key: str = "sk-ant-test") -> Callable[[Request], Reply]:
    """Answer valid requests with `replies` in order (dicts are 200 bodies)."""
    return replay(
        replies, lambda req: protocol_problem(req, api_key), error(500, "api_error", "stand-in script exhausted")
    )
