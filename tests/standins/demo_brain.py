"""Stand-in models that answer the demo issue the way the recorded demo run did, over each
vendor's wire protocol: they read the request (structured answer or which coding turn) the
way a model would and reply in the vendor's format."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tamma.providers.scripted import DEMO_TRANSCRIPT
from tests.standins import anthropic_api, openai_api
from tests.standins.http import Reply, Request

_DOC = json.loads(DEMO_TRANSCRIPT.read_text())
_ANSWERS = {e["purpose"]: e["response"] for e in _DOC["exchanges"] if e["purpose"] != "code"}
_CODE = [e["response"] for e in _DOC["exchanges"] if e["purpose"] == "code"]
_ANSWERS["review"] = {"approve": True, "summary": "Resolves the issue as planned.", "findings": []}
_KIND = {"Analysis": "analysis", "Plan": "plan", "SelfReview": "review"}


def anthropic_brain(
    api_key: str,
    input_tokens: int = 100,
    output_tokens: int = 20,
    before: Callable[[Request], Reply | None] | None = None,
    code: list[dict[str, Any]] | None = None,
) -> Callable[[Request], Reply]:
    """`code`: the coding turns to answer with (default: the demo's)."""
    turns = code if code is not None else _CODE

    def respond(req: Request) -> Reply:
        problem = anthropic_api.protocol_problem(req, api_key) or (before(req) if before else None)
        if problem is not None:
            return problem
        body = req.json
        usage = {"input_tokens": input_tokens, "output_tokens": output_tokens}
        if (body.get("tool_choice") or {}).get("name") == "answer":
            kind = _KIND[body["tools"][0]["input_schema"]["title"]]
            answer = anthropic_api.message([anthropic_api.tool_use("answer", _ANSWERS[kind])], "tool_use", **usage)
            return anthropic_api.as_asked(req, Reply(200, answer))
        turn = sum(1 for m in body["messages"] if m["role"] == "assistant")
        r = turns[turn]
        content = ([anthropic_api.text(r["text"])] if r.get("text") else []) + [
            anthropic_api.tool_use(c["name"], c["input"], c["id"]) for c in r.get("tool_calls", [])
        ]
        reply = anthropic_api.message(content, "tool_use" if r.get("tool_calls") else "end_turn", **usage)
        return anthropic_api.as_asked(req, Reply(200, reply))

    return respond


def openai_brain(api_key: str | None = None) -> Callable[[Request], Reply]:
    def respond(req: Request) -> Reply:
        problem = openai_api.protocol_problem(req, api_key)
        if problem is not None:
            return problem
        body = req.json
        choice = body.get("tool_choice")
        if isinstance(choice, dict) and choice["function"]["name"] == "answer":
            kind = _KIND[body["tools"][0]["function"]["parameters"]["title"]]
            return openai_api.as_asked(
                req, Reply(200, openai_api.completion(None, [openai_api.call("answer", _ANSWERS[kind])]))
            )
        turn = sum(1 for m in body["messages"] if m["role"] == "assistant")
        r = _CODE[turn]
        calls = [openai_api.call(c["name"], c["input"], c["id"]) for c in r.get("tool_calls", [])]
        return openai_api.as_asked(req, Reply(200, openai_api.completion(r.get("text"), calls or None)))

    return respond
