"""The parts of the OpenAI chat-completions API Tamma uses (POST /v1/chat/completions):
bearer auth, function tool calls with JSON-string arguments, finish_reason, usage with
prompt_tokens_details.cached_tokens, and error bodies {"error": {"message", "type", "code"}}."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

from tests.standins.http import Reply, Request, replay

_ids = itertools.count(1)


def completion(
    content: str | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
    finish_reason: str | None = None,
    *,
    prompt_tokens: int = 100,
    completion_tokens: int = 20,
    cached: int = 0,
    refusal: str | None = None,
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": refusal}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": f"chatcmpl-{next(_ids)}",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "local-model",
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason or ("tool_calls" if tool_calls else "stop"),
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached},
        },
    }


def call(name: str, arguments: dict[str, Any] | str, id: str | None = None) -> dict[str, Any]:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": id or f"call_{next(_ids)}", "type": "function", "function": {"name": name, "arguments": args}}


def error(status: int, kind: str, msg: str, code: str | None = None, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, {"error": {"message": msg, "type": kind, "param": None, "code": code}}, headers or {})


def protocol_problem(req: Request, api_key: str | None) -> Reply | None:
    if req.path != "/v1/chat/completions":
        return error(404, "invalid_request_error", f"Unknown request URL: POST {req.path}")
    if api_key is not None and req.headers.get("authorization") != f"Bearer {api_key}":
        return error(401, "invalid_request_error", "Incorrect API key provided", "invalid_api_key")
    body = req.json
    if "model" not in body or "messages" not in body:
        return error(400, "invalid_request_error", "model and messages are required")
    msgs = body["messages"]
    for i, m in enumerate(msgs):
        for tc in m.get("tool_calls") or []:
            answered = any(n.get("role") == "tool" and n.get("tool_call_id") == tc["id"] for n in msgs[i + 1 :])
            if not answered:
                return error(
                    400,
                    "invalid_request_error",
                    "An assistant message with 'tool_calls' must be followed by tool messages",
                )
    return None


def scripted(replies: list[Reply | dict[str, Any]], api_key: str | None = None) -> Callable[[Request], Reply]:
    """Answer valid requests with `replies` in order (dicts are 200 bodies)."""
    return replay(
        replies, lambda req: protocol_problem(req, api_key), error(500, "server_error", "stand-in script exhausted")
    )
