"""The OpenAI-compatible provider through the real SDK against a chat-completions stand-in."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tamma.agent.loop import run_agent
from tamma.agent.sandbox import SandboxPolicy, run_sandboxed
from tamma.agent.testing import resolve_test_command
from tamma.agent.tools import Toolbox
from tamma.agent.workspace import Workspace
from tamma.demo import make_sample_repo
from tamma.errors import ProviderError
from tamma.models import Analysis
from tamma.providers.openai import OpenAIProvider
from tamma.providers.ratelimit import RateLimited
from tamma.providers.scripted import DEMO_TRANSCRIPT
from tests.standins import openai_api as api
from tests.standins.http import Reply, serve

ANALYSIS = {"summary": "off by one", "complexity": "low", "risk": "low"}


def provider(url: str, key: str | None = None, **kw: Any) -> OpenAIProvider:
    return OpenAIProvider(api_key=key, model="local-model", base_url=f"{url}/v1", **kw)


def demo_code_replies() -> list[dict[str, Any]]:
    doc = json.loads(DEMO_TRANSCRIPT.read_text())
    replies = []
    for ex in (e for e in doc["exchanges"] if e["purpose"] == "code"):
        r = ex["response"]
        calls = [api.call(c["name"], c["input"], c["id"]) for c in r.get("tool_calls", [])]
        replies.append(api.completion(r.get("text"), calls or None))
    return replies


async def test_structured_output_via_forced_function_and_cached_tokens() -> None:
    with serve(
        api.scripted([api.completion(None, [api.call("answer", ANALYSIS)], prompt_tokens=900, cached=600)])
    ) as s:
        p = provider(s.url)
        analysis = await p.structured("analysis", "sys", "p", Analysis)
    assert analysis.summary == "off by one"
    body = s.requests[0].json
    assert body["tool_choice"] == {"type": "function", "function": {"name": "answer"}}
    assert body["tools"][0]["function"]["parameters"] == Analysis.model_json_schema()
    assert body["messages"][0] == {"role": "system", "content": "sys"}
    assert (p.usage.input_tokens, p.usage.cache_read_tokens) == (300, 600)


async def test_malformed_json_arguments_are_fed_back() -> None:
    bad = api.completion(None, [api.call("answer", '{"summary": "x", ', "call_bad")])
    good = api.completion(None, [api.call("answer", ANALYSIS)])
    with serve(api.scripted([bad, good])) as s:
        await provider(s.url).structured("analysis", "sys", "p", Analysis)
    tool_msg = s.requests[1].json["messages"][-1]
    assert tool_msg["role"] == "tool" and tool_msg["tool_call_id"] == "call_bad"
    assert "not valid JSON" in tool_msg["content"]


async def test_length_and_refusal_then_give_up() -> None:
    replies = [api.completion("partial", finish_reason="length"), api.completion(None, refusal="I can't help")]
    with serve(api.scripted(replies)) as s, pytest.raises(ProviderError) as info:
        await provider(s.url, output_retries=1).structured("analysis", "sys", "p", Analysis)
    assert "refused: I can't help" in info.value.message and not info.value.retryable
    assert "cut off" in s.requests[1].json["messages"][-1]["content"]


@pytest.mark.parametrize(
    "reply,retryable,fragment,wait",
    [
        (
            api.error(429, "requests", "Rate limit reached", "rate_limit_exceeded", {"retry-after-ms": "1500"}),
            False,  # the workflow's timers wait it out (RateLimited), not Temporal's retry policy
            "rate limit (429)",
            1.5,
        ),
        (api.error(503, "server_error", "overloaded"), True, "(503)", None),
        (
            api.error(404, "invalid_request_error", "The model `local-model` does not exist", "model_not_found"),
            False,
            "no model 'local-model'",
            None,
        ),
        (api.error(400, "invalid_request_error", "context too long"), False, "context too long", None),
        (
            api.error(
                400,
                "invalid_request_error",
                "This model's maximum context length is 128000 tokens. However, "
                "your messages resulted in 130512 tokens.",
                "context_length_exceeded",
            ),
            False,
            "does not fit the model's context window",
            None,
        ),
    ],
)
async def test_http_errors_are_classified(reply: Reply, retryable: bool, fragment: str, wait: float | None) -> None:
    with serve(api.scripted([reply])) as s, pytest.raises(ProviderError) as info:
        await provider(s.url, rate_limit_inline_s=0).structured("analysis", "sys", "p", Analysis)
    assert info.value.retryable is retryable and fragment in info.value.message
    assert info.value.context_overflow is ("context window" in fragment)
    waited = info.value.wait_s if isinstance(info.value, RateLimited) else info.value.retry_after_s
    assert waited == wait and len(s.requests) == 1


async def test_wrong_key_names_the_setting() -> None:
    with serve(api.scripted([], api_key="sk-right")) as s, pytest.raises(ProviderError) as info:
        await provider(s.url, key="sk-wrong").structured("analysis", "sys", "p", Analysis)
    assert not info.value.retryable and "OPENAI_API_KEY" in info.value.message


async def test_connection_refused_is_retryable() -> None:
    with pytest.raises(ProviderError) as info:
        await provider("http://127.0.0.1:9", timeout_s=2).structured("analysis", "sys", "p", Analysis)
    assert info.value.retryable and "cannot connect" in info.value.message


async def test_tool_use_coding_session_edits_a_real_workspace(tmp_path: Path) -> None:
    repo = make_sample_repo(tmp_path / "repo")
    ws = await Workspace.clone(str(repo), "main", tmp_path / "work")
    toolbox = Toolbox(ws, lambda: run_sandboxed(resolve_test_command(ws.root, None), ws.root, SandboxPolicy()))
    replies = demo_code_replies()
    replies.insert(1, api.completion(None, [api.call("read_file", "{not json", "call_x")]))
    with serve(api.scripted(replies)) as s:
        outcome = await run_agent(provider(s.url), toolbox, "sys", "fix paginate", 10, lambda t, w: None)
    assert "(page - 1) * per_page" in (ws.root / "pager.py").read_text()
    assert outcome.turns == 5
    msgs = s.requests[-1].json["messages"]
    tool_msgs = [m for m in msgs if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_msgs] == ["call_1", "call_x", "call_2", "call_3"]
    assert tool_msgs[1]["content"].startswith("ERROR: bad arguments")


async def test_replies_are_streamed_with_their_usage_and_a_long_one_outlasts_the_timeout() -> None:
    """A reply taking 3x llm.timeout_s in all arrives whole (text and a tool call's arguments in
    pieces), because no silence in it is longer than the idle limit; its tokens come from the
    stream's usage chunk, cached ones included."""
    body = api.completion(
        "Thinking it through. " * 20,
        [api.call("answer", ANALYSIS)],
        prompt_tokens=900,
        completion_tokens=70,
        cached=512,
    )
    chunks = api.chunks(body, gap_s=0.08)
    assert len(chunks) * 0.08 > 3 * 0.4
    with serve(api.scripted([Reply(200, stream=chunks)])) as s:
        p = provider(s.url, timeout_s=0.4, idle_timeout_s=0.3)
        got = await p.structured("analysis", "sys", "p", Analysis)
    assert got == Analysis.model_validate(ANALYSIS)
    asked = s.requests[0].json
    assert asked["stream"] is True and asked["stream_options"] == {"include_usage": True}
    assert (p.usage.input_tokens, p.usage.cache_read_tokens, p.usage.output_tokens) == (388, 512, 70)


async def test_a_stream_that_goes_quiet_mid_reply_fails_retryably() -> None:
    body = api.completion(None, [api.call("answer", ANALYSIS)])
    stalled = Reply(200, stream=api.chunks(body, stall_after=3, stall_s=3))
    with serve(api.scripted([stalled])) as s, pytest.raises(ProviderError) as info:
        await provider(s.url, idle_timeout_s=0.3).structured("analysis", "sys", "p", Analysis)
    assert info.value.retryable and "sent nothing for 0.3s in the middle of a reply" in info.value.message


@pytest.mark.parametrize(
    "kind,retryable,limited",
    [("server_error", True, False), ("requests", False, True), ("invalid_request_error", False, False)],
)
async def test_an_error_inside_a_stream_is_classified_by_its_type(kind: str, retryable: bool, limited: bool) -> None:
    """The server answers 200, starts streaming, then sends an error object: it is the error its
    type names (a server error retries, a rate limit waits), not a rejected request."""
    started = api.completion(None, [api.call("answer", ANALYSIS)])
    with serve(api.scripted([api.stream_error(kind, "busy", started)])) as s, pytest.raises(ProviderError) as info:
        await provider(s.url, rate_limit_inline_s=0).structured("analysis", "sys", "p", Analysis)
    assert info.value.retryable is retryable and isinstance(info.value, RateLimited) is limited, info.value.message
    assert "busy" in info.value.message


async def test_a_server_that_cannot_stream_is_asked_again_whole_and_no_longer_streamed_to(
    caplog: pytest.LogCaptureFixture,
) -> None:
    replies = [
        api.completion(None, [api.call("answer", ANALYSIS)]),
        api.completion(None, [api.call("answer", ANALYSIS)]),
    ]
    with serve(api.scripted(replies, streams=False)) as s:
        p = provider(s.url)
        assert await p.structured("analysis", "sys", "p", Analysis) == Analysis.model_validate(ANALYSIS)
        assert await p.structured("analysis", "sys", "p", Analysis) == Analysis.model_validate(ANALYSIS)
    streamed = [bool(r.json.get("stream")) for r in s.requests]
    assert streamed == [True, False, False]  # refused once, then whole every time
    assert "asking without streaming" in caplog.text
    with serve(api.scripted(replies[:1])) as s:
        await provider(s.url, stream=False).structured("analysis", "sys", "p", Analysis)
    assert "stream" not in s.requests[0].json  # llm.openai_stream = false


async def test_arguments_nested_too_deeply_are_fed_back_not_a_crash() -> None:
    """json.loads raises RecursionError (not JSONDecodeError) on deep nesting: a model's answer
    or tool call of 100,000 brackets is told so, like any malformed one."""
    deep = "[" * 100_000 + "]" * 100_000
    with serve(
        api.scripted(
            [api.completion(None, [api.call("answer", deep, "call_deep")]), api.completion(None, [api.call("answer", ANALYSIS)])]
        )
    ) as s:
        assert (await provider(s.url).structured("analysis", "sys", "p", Analysis)).summary == "off by one"
    assert "nested too deeply" in s.requests[1].json["messages"][-1]["content"]
    from tamma.providers.openai import _tool_call

    class Fn:
        name, arguments = "read_file", deep

    class Call:
        id, function = "c1", Fn

    assert "nested too deeply" in (_tool_call(Call).input_error or "")
