"""The parts of the OpenAI chat-completions API Tamma uses (POST /v1/chat/completions):
bearer auth, function tool calls with JSON-string arguments, finish_reason, usage with
prompt_tokens_details.cached_tokens, and error bodies {"error": {"message", "type", "code"}}.
A request with `"stream": true` is answered with `chat.completion.chunk` server-sent events
(text and tool-call arguments in pieces, the finish reason, a usage chunk when
`stream_options.include_usage` asks for it, then `data: [DONE]`), as the API sends them."""

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


def scripted(
    replies: list[Reply | dict[str, Any]], api_key: str | None = None, *, streams: bool = True
) -> Callable[[Request], Reply]:
    """Answer valid requests with `replies` in order (dicts are 200 bodies); a request that asks
    for a stream gets a 200 body as chunks, each after the reply's `delay_s`. `streams=False`: a
    server that cannot stream (it refuses `stream_options` with a 400, as some compatible ones do)."""
    answer = replay(
        replies, lambda req: protocol_problem(req, api_key), error(500, "server_error", "stand-in script exhausted")
    )

    def respond(req: Request) -> Reply:
        if not streams and "stream_options" in req.json:
            return error(400, "invalid_request_error", "Unrecognized request argument supplied: stream_options")
        return as_asked(req, answer(req))

    return respond


def as_asked(req: Request, reply: Reply) -> Reply:
    """`reply` as the API sends it for `req`: a 200 completion as chunks (each after the reply's
    `delay_s`) when the request asked for a stream, as JSON otherwise."""
    if reply.status == 200 and reply.stream is None and isinstance(reply.body, dict) and req.json.get("stream"):
        usage = bool((req.json.get("stream_options") or {}).get("include_usage"))
        return Reply(200, stream=chunks(reply.body, gap_s=reply.delay_s, usage=usage), headers=reply.headers)
    return reply


def _data(obj: dict[str, Any] | str) -> bytes:
    return f"data: {obj if isinstance(obj, str) else json.dumps(obj)}\n\n".encode()


def chunks(
    body: dict[str, Any], gap_s: float = 0.0, usage: bool = True, stall_after: int | None = None, stall_s: float = 0.0
) -> list[tuple[float, bytes]]:
    """A completion as the stream of chunks the API sends for it. `gap_s` before every chunk; a
    pause of `stall_s` before chunk number `stall_after` (a model that goes quiet mid-reply)."""
    head = {k: body[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}
    choice = body["choices"][0]
    message = choice["message"]

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return _data(head | {"choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]})

    out = [chunk({"role": "assistant", "content": ""})]
    text = message.get("content") or ""
    out += [chunk({"content": text[k : k + 40]}) for k in range(0, len(text), 40)]
    if message.get("refusal"):
        out.append(chunk({"refusal": message["refusal"]}))
    for i, tc in enumerate(message.get("tool_calls") or []):
        first = {
            "index": i,
            "id": tc["id"],
            "type": "function",
            "function": {"name": tc["function"]["name"], "arguments": ""},
        }
        out.append(chunk({"tool_calls": [first]}))
        args = tc["function"]["arguments"]
        out += [
            chunk({"tool_calls": [{"index": i, "function": {"arguments": args[k : k + 30]}}]})
            for k in range(0, len(args), 30)
        ]
    out.append(chunk({}, choice["finish_reason"]))
    if usage:
        out.append(_data(head | {"choices": [], "usage": body["usage"]}))
    out.append(_data("[DONE]"))
    timed = [(gap_s, c) for c in out]
    if stall_after is not None:
        timed[stall_after] = (stall_s, timed[stall_after][1])
    return timed


def stream_error(kind: str, message: str, after: dict[str, Any]) -> Reply:
    """A stream that starts (`after`'s first chunk) and then sends an error object, as the API
    does when it fails mid-reply."""
    first = chunks(after)[0]
    return Reply(200, stream=[first, (0.0, _data({"error": {"message": message, "type": kind, "code": None}}))])
