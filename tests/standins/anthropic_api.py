"""The parts of the Anthropic Messages API Tamma uses (POST /v1/messages), as documented: the
API key (x-api-key, or a bearer token as the installed SDK sends it), the anthropic-version
header, tool_use / tool_result pairing, usage fields with cache counters, and error bodies
{"type": "error", "error": {"type", "message"}}."""

from __future__ import annotations

import itertools
import json
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
    """Answer valid requests with `replies` in order (dicts are 200 bodies); a request that asks
    for a stream (`"stream": true`) gets a 200 body as server-sent events, each event after the
    reply's `delay_s` (a reply already streamed is sent as it is)."""
    answer = replay(
        replies, lambda req: protocol_problem(req, api_key), error(500, "api_error", "stand-in script exhausted")
    )

    return lambda req: as_asked(req, answer(req))


def as_asked(req: Request, reply: Reply) -> Reply:
    """`reply` as the API sends it for `req`: a 200 message as server-sent events (each after the
    reply's `delay_s`) when the request asked for a stream, as JSON otherwise."""
    if reply.status == 200 and reply.stream is None and isinstance(reply.body, dict) and req.json.get("stream"):
        return Reply(200, stream=events(reply.body, gap_s=reply.delay_s), headers=reply.headers)
    return reply


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def events(
    msg: dict[str, Any], gap_s: float = 0.0, stall_after: int | None = None, stall_s: float = 0.0
) -> list[tuple[float, bytes]]:
    """A Messages API reply as the stream the API sends for it: message_start, each content
    block's start / deltas (text in pieces, a tool's input as partial JSON) / stop, message_delta
    with the stop reason and output tokens, message_stop. `gap_s` before every event; a pause of
    `stall_s` before event number `stall_after` (a model that goes quiet mid-reply)."""
    usage = msg["usage"]
    start = {**msg, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    out = [_event("message_start", {"type": "message_start", "message": start})]
    for i, block in enumerate(msg["content"]):
        if block["type"] == "text":
            out.append(
                _event(
                    "content_block_start",
                    {"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}},
                )
            )
            text = block["text"]
            for k in range(0, max(1, len(text)), 40):
                delta = {"type": "text_delta", "text": text[k : k + 40]}
                out.append(_event("content_block_delta", {"type": "content_block_delta", "index": i, "delta": delta}))
        else:
            first = {**block, "input": {}}
            out.append(
                _event("content_block_start", {"type": "content_block_start", "index": i, "content_block": first})
            )
            raw = json.dumps(block["input"])
            for k in range(0, len(raw), 40):
                delta = {"type": "input_json_delta", "partial_json": raw[k : k + 40]}
                out.append(_event("content_block_delta", {"type": "content_block_delta", "index": i, "delta": delta}))
        out.append(_event("content_block_stop", {"type": "content_block_stop", "index": i}))
    end = {"stop_reason": msg["stop_reason"], "stop_sequence": None}
    out.append(
        _event(
            "message_delta", {"type": "message_delta", "delta": end, "usage": {"output_tokens": usage["output_tokens"]}}
        )
    )
    out.append(_event("message_stop", {"type": "message_stop"}))
    return [(stall_s if n == stall_after else gap_s, chunk) for n, chunk in enumerate(out)]


def stream_error(kind: str, message: str, after: dict[str, Any]) -> Reply:
    """A stream that starts (`after`'s message_start) and then reports an error event, as the API
    does when it is overloaded mid-reply."""
    first = events(after)[0]
    err = _event("error", {"type": "error", "error": {"type": kind, "message": message}})
    return Reply(200, stream=[first, (0.0, err)])


class PromptCache:
    """Anthropic's prompt caching, as documented, for counting: the prompt is the blocks of
    `tools`, then `system`, then each message's content, in that order; a block carrying
    `cache_control` is a breakpoint; a request reads the longest prefix cached earlier whose end
    is at a breakpoint or up to 20 blocks before one, and writes the prefixes at its breakpoints;
    a prefix under `minimum` tokens is never cached. Tokens are estimated as 4 characters each
    (the real tokenizer is not public), which is the same for every run compared."""

    LOOKBACK = 20

    def __init__(self, minimum: int = 1024) -> None:
        self.minimum = minimum
        self.cached: set[str] = set()

    @staticmethod
    def blocks(body: dict[str, Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = list(body.get("tools") or [])
        system = body.get("system") or []
        out += [{"type": "text", "text": system}] if isinstance(system, str) else list(system)
        for m in body["messages"]:
            content = m["content"]
            blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
            out += [{"role": m["role"], **b} for b in blocks]
        return out

    def usage(self, body: dict[str, Any]) -> dict[str, int]:
        import hashlib

        blocks = self.blocks(body)
        sizes, prefixes = [], []
        running = hashlib.sha256()
        for b in blocks:
            plain = json.dumps({k: v for k, v in b.items() if k != "cache_control"}, sort_keys=True)
            sizes.append(max(1, len(plain) // 4))
            running.update(plain.encode())
            prefixes.append(running.copy().hexdigest())
        total = sum(sizes)
        ends = list(itertools.accumulate(sizes))
        breakpoints = [i for i, b in enumerate(blocks) if "cache_control" in b]
        hit = -1
        for bp in breakpoints:
            for i in range(bp, max(-1, bp - self.LOOKBACK - 1), -1):
                if prefixes[i] in self.cached:
                    hit = max(hit, i)
                    break
        read = ends[hit] if hit >= 0 else 0
        last = max((bp for bp in breakpoints if ends[bp] >= self.minimum), default=-1)
        write = ends[last] - read if last > hit else 0
        for bp in breakpoints:
            if ends[bp] >= self.minimum:
                self.cached.add(prefixes[bp])
        return {
            "input_tokens": total - read - write,
            "cache_read_input_tokens": read,
            "cache_creation_input_tokens": write,
        }
