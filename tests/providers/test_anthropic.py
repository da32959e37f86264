"""The Anthropic provider through the real SDK against a Messages API stand-in on 127.0.0.1."""

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
from tamma.config import Price
from tamma.demo import make_sample_repo
from tamma.errors import BudgetExceeded, ProviderError
from tamma.models import Analysis, Budget, Plan
from tamma.providers.anthropic import AnthropicProvider
from tamma.providers.ratelimit import RateLimited
from tamma.providers.scripted import DEMO_TRANSCRIPT
from tamma.version import user_agent
from tests.standins import anthropic_api as api
from tests.standins.http import Reply, serve

KEY = "sk-ant-test"
ANALYSIS = {"summary": "off by one", "complexity": "low", "risk": "low", "affected_areas": ["pager.py"]}


def provider(url: str, **kw: Any) -> AnthropicProvider:
    return AnthropicProvider(api_key=kw.pop("api_key", KEY), model="claude-test", base_url=url, **kw)


def demo_code_replies() -> list[dict[str, Any]]:
    """The demo recording's coding turns, spoken in the Messages API's wire format."""
    doc = json.loads(DEMO_TRANSCRIPT.read_text())
    replies = []
    for ex in (e for e in doc["exchanges"] if e["purpose"] == "code"):
        r = ex["response"]
        content = ([api.text(r["text"])] if r.get("text") else []) + [
            api.tool_use(c["name"], c["input"], c["id"]) for c in r.get("tool_calls", [])
        ]
        replies.append(api.message(content, "tool_use" if r.get("tool_calls") else "end_turn"))
    return replies


async def test_structured_output_round_trip_with_cost_and_caching() -> None:
    reply = api.message(
        [api.tool_use("answer", ANALYSIS)],
        "tool_use",
        input_tokens=1000,
        output_tokens=200,
        cache_read=5000,
        cache_write=300,
    )
    with serve(api.scripted([reply])) as s:
        p = provider(s.url, price=Price(input=3, output=15, cache_read=0.3, cache_write=3.75))
        analysis = await p.structured("analysis", "sys", "<issue>paginate</issue>", Analysis)
    assert analysis == Analysis.model_validate(ANALYSIS)
    body = s.requests[0].json
    assert body["tool_choice"] == {"type": "tool", "name": "answer"}
    assert body["tools"][0]["input_schema"] == Analysis.model_json_schema()
    assert body["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert KEY in (s.requests[0].headers.get("x-api-key"), s.requests[0].headers.get("authorization", "")[7:])
    assert s.requests[0].headers["user-agent"] == user_agent()  # Tamma names itself and its version
    assert (p.usage.input_tokens, p.usage.output_tokens, p.usage.cache_read_tokens, p.usage.cache_write_tokens) == (
        1000,
        200,
        5000,
        300,
    )
    assert p.usage.cost_usd == pytest.approx((1000 * 3 + 200 * 15 + 5000 * 0.3 + 300 * 3.75) / 1e6)


async def test_invalid_structured_answer_is_fed_back_then_accepted() -> None:
    bad = api.message([api.tool_use("answer", {"summary": "x", "complexity": "enormous"}, "toolu_bad")], "tool_use")
    good = api.message([api.tool_use("answer", ANALYSIS)], "tool_use")
    with serve(api.scripted([bad, good])) as s:
        analysis = await provider(s.url).structured("analysis", "sys", "p", Analysis)
    assert analysis.risk == "low"
    fed_back = s.requests[1].json["messages"][-1]["content"][0]
    assert fed_back["type"] == "tool_result" and fed_back["tool_use_id"] == "toolu_bad" and fed_back["is_error"]
    assert "does not match the schema" in fed_back["content"]


async def test_max_tokens_and_refusal_are_bounded() -> None:
    cut = api.message([api.text("I think the plan is")], "max_tokens")
    refused = api.message([], "refusal")
    good = api.message([api.tool_use("answer", {"summary": "s", "steps": [], "estimate_hours": 1})], "tool_use")
    with serve(api.scripted([cut, good])) as s:
        plan = await provider(s.url).structured("plan", "sys", "p", Plan)
    assert plan.estimate_hours == 1 and "cut off" in s.requests[1].json["messages"][-1]["content"]
    with serve(api.scripted([refused, refused, refused])) as s, pytest.raises(ProviderError) as info:
        await provider(s.url, output_retries=2).structured("plan", "sys", "p", Plan)
    assert not info.value.retryable and "no usable answer after 3 tries" in info.value.message
    assert len(s.requests) == 3


@pytest.mark.parametrize(
    "reply,retryable,fragment,wait",
    [
        # rate limits and overload go to the workflow's timers (RateLimited), with the wait asked for
        (api.error(429, "rate_limit_error", "slow down", {"retry-after": "7"}), False, "rate limit (429)", 7.0),
        (api.error(529, "overloaded_error", "Overloaded"), False, "overloaded (529)", 2.0),  # first backoff
        (api.error(500, "api_error", "boom"), True, "(500)", None),
        (api.error(400, "invalid_request_error", "max_tokens: too large"), False, "max_tokens: too large", None),
        (api.error(403, "permission_error", "no access"), False, "denied access (403)", None),
        (api.error(404, "not_found_error", "model: claude-test"), False, "no model 'claude-test' (404)", None),
    ],
)
async def test_http_errors_are_classified(reply: Reply, retryable: bool, fragment: str, wait: float | None) -> None:
    with serve(api.scripted([reply])) as s, pytest.raises(ProviderError) as info:
        await provider(s.url, rate_limit_inline_s=0).structured("analysis", "sys", "p", Analysis)
    assert info.value.retryable is retryable and fragment in info.value.message
    waited = info.value.wait_s if isinstance(info.value, RateLimited) else info.value.retry_after_s
    assert waited == wait
    assert len(s.requests) == 1  # the SDK's own retries are off: Temporal retries


async def test_bad_key_is_not_retryable_and_names_the_setting() -> None:
    with serve(api.scripted([])) as s, pytest.raises(ProviderError) as info:
        await provider(s.url, api_key="sk-ant-wrong").structured("analysis", "sys", "p", Analysis)
    assert not info.value.retryable and "ANTHROPIC_API_KEY" in info.value.message
    assert "sk-ant-wrong" not in info.value.message


async def test_timeout_is_retryable() -> None:
    """No answer at all (not even the reply's start) within llm.timeout_s."""
    silent = Reply(200, stream=api.events(api.message([api.tool_use("answer", ANALYSIS)], "tool_use")), delay_s=2)
    with serve(api.scripted([silent])) as s, pytest.raises(ProviderError) as info:
        await provider(s.url, timeout_s=0.3).structured("analysis", "sys", "p", Analysis)
    assert info.value.retryable and "did not answer in time" in info.value.message


async def test_a_long_reply_that_keeps_arriving_outlasts_the_timeout() -> None:
    """Replies are streamed: a reply taking 3x llm.timeout_s in all arrives whole, because no
    silence in it is longer than the idle limit (one 120 s limit used to cut such replies off)."""
    answer = api.message([api.text("Thinking it through. " * 20), api.tool_use("answer", ANALYSIS)], "tool_use")
    chunks = api.events(answer, gap_s=0.08)
    assert len(chunks) * 0.08 > 3 * 0.4
    with serve(api.scripted([Reply(200, stream=chunks)])) as s:
        got = await provider(s.url, timeout_s=0.4, idle_timeout_s=0.3).structured("analysis", "sys", "p", Analysis)
    assert got == Analysis.model_validate(ANALYSIS)
    assert s.requests[0].json["stream"] is True


async def test_a_model_that_goes_quiet_mid_reply_is_retried_in_place_with_the_conversation(tmp_path: Path) -> None:
    _, toolbox = await _workspace_toolbox(tmp_path)
    replies = demo_code_replies()
    stalled = Reply(200, stream=api.events(replies[1], stall_after=3, stall_s=3))
    turns: list[str] = []
    with serve(api.scripted([replies[0], stalled, *replies[1:]])) as s:
        p = provider(s.url, idle_timeout_s=0.3)
        outcome = await run_agent(p, toolbox, "sys", "fix paginate", 10, lambda t, w: turns.append(w))
    assert "Fixed paginate()" in outcome.summary
    assert any("sent nothing for 0.3s in the middle of a reply" in w and "retrying" in w for w in turns)
    # the retry asked again with the same conversation (the first turn's call and its result)
    assert s.requests[2].json["messages"] == s.requests[1].json["messages"]


@pytest.mark.parametrize(
    "kind,retryable,limited",
    [("overloaded_error", False, True), ("api_error", True, False), ("invalid_request_error", False, False)],
)
async def test_an_error_event_inside_a_stream_is_classified_by_its_type(
    kind: str, retryable: bool, limited: bool
) -> None:
    """The API can answer 200, start streaming, then send an `error` event (overloaded mid-reply):
    it is the error its type names, not a 200 "rejected the request"."""
    started = api.message([api.tool_use("answer", ANALYSIS)], "tool_use")
    with serve(api.scripted([api.stream_error(kind, "busy", started)])) as s, pytest.raises(ProviderError) as info:
        await provider(s.url, rate_limit_inline_s=0).structured("analysis", "sys", "p", Analysis)
    assert info.value.retryable is retryable and isinstance(info.value, RateLimited) is limited, info.value.message
    assert "(200)" not in info.value.message


async def _workspace_toolbox(tmp_path: Path) -> tuple[Workspace, Toolbox]:
    repo = make_sample_repo(tmp_path / "repo")
    ws = await Workspace.clone(str(repo), "main", tmp_path / "work")
    return ws, Toolbox(
        ws, lambda: run_sandboxed(resolve_test_command(ws.root, None), ws.root, SandboxPolicy(timeout_s=60))
    )


async def test_tool_use_coding_session_edits_a_real_workspace(tmp_path: Path) -> None:
    ws, toolbox = await _workspace_toolbox(tmp_path)
    with serve(api.scripted(demo_code_replies())) as s:
        p = provider(s.url)
        outcome = await run_agent(p, toolbox, "sys", "fix paginate", 10, lambda t, w: None)
    assert outcome.turns == 4 and "Fixed paginate()" in outcome.summary
    assert "(page - 1) * per_page" in (ws.root / "pager.py").read_text()
    assert toolbox.tests_run[-1].exit_code == 0
    # Each tool_use was answered by a tool_result in the next request (the stand-in enforces it too).
    last = s.requests[-1].json["messages"]
    results = [
        b
        for m in last
        if m["role"] == "user" and isinstance(m["content"], list)
        for b in m["content"]
        if b["type"] == "tool_result"
    ]
    assert [r["tool_use_id"] for r in results] == ["call_1", "call_2", "call_3"]
    assert "def paginate" in results[0]["content"] and "PASSED" in results[2]["content"]
    assert [t["name"] for t in s.requests[0].json["tools"]][-1] == "run_tests"
    assert s.requests[0].json["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    assert p.usage.calls == 4 and p.usage.input_tokens == 400


async def test_unknown_tool_and_empty_answer_are_fed_back(tmp_path: Path) -> None:
    _, toolbox = await _workspace_toolbox(tmp_path)
    replies = [
        api.message([api.tool_use("delete_everything", {}, "toolu_x")], "tool_use"),
        api.message([], "end_turn"),
        api.message([api.text("Nothing to do after all.")], "end_turn"),
    ]
    with serve(api.scripted(replies)) as s:
        outcome = await run_agent(provider(s.url), toolbox, "sys", "task", 10, lambda t, w: None)
    assert outcome.summary == "Nothing to do after all."
    unknown = s.requests[1].json["messages"][-1]["content"][0]
    assert unknown["is_error"] and "unknown tool" in unknown["content"]
    assert "reply was empty" in json.dumps(s.requests[2].json["messages"][-1])


async def test_budget_exhausted_mid_session(tmp_path: Path) -> None:
    _, toolbox = await _workspace_toolbox(tmp_path)
    heavy = [api.message([api.tool_use("list_files", {}, f"t{i}")], "tool_use", input_tokens=4000) for i in range(5)]
    with serve(api.scripted(heavy)) as s, pytest.raises(BudgetExceeded) as info:
        await run_agent(
            provider(s.url), toolbox, "sys", "task", 10, lambda t, w: None, budget=Budget(max_tokens=10_000)
        )
    assert "tokens budget ran out" in info.value.message
    assert len(s.requests) == 3 and info.value.spent["input_tokens"] == 12_000


async def test_a_502_mid_session_loses_no_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The model's endpoint fails at turn 3 (a 502, then a dropped answer): the loop retries in
    place, the conversation and the edit already made are kept, and the session finishes."""
    from tamma.agent import loop

    monkeypatch.setattr(loop, "TRANSIENT_WAITS", (0.01, 0.01, 0.01, 0.01))
    ws, toolbox = await _workspace_toolbox(tmp_path)
    replies: list[Any] = demo_code_replies()
    replies[2:2] = [api.error(502, "api_error", "bad gateway"), api.error(503, "overloaded_error", "try again")]
    turns: list[str] = []
    with serve(api.scripted(replies)) as s:
        outcome = await run_agent(provider(s.url), toolbox, "sys", "fix paginate", 10, lambda t, w: turns.append(w))
    assert outcome.turns == 4 and "Fixed paginate()" in outcome.summary
    assert "(page - 1) * per_page" in (ws.root / "pager.py").read_text()
    assert sum("retrying in" in w for w in turns) == 2
    # the retried request carried the whole conversation so far (the edit's tool result included)
    assert s.requests[4].json["messages"] == s.requests[2].json["messages"]


async def test_a_model_that_loops_is_told_then_stopped(tmp_path: Path) -> None:
    _, toolbox = await _workspace_toolbox(tmp_path)
    same = [api.message([api.tool_use("read_file", {"path": "pager.py"}, f"r{i}")], "tool_use") for i in range(8)]
    with serve(api.scripted(same)) as s, pytest.raises(ProviderError) as info:
        await run_agent(provider(s.url), toolbox, "sys", "task", 20, lambda t, w: None)
    assert "stuck (6 identical calls in a row" in info.value.message and not info.value.retryable
    assert len(s.requests) == 6  # stopped, not run to max_turns
    told = json.dumps(s.requests[3].json["messages"][-1])
    assert "same call 3 times in a row" in told


async def test_an_edit_undone_again_and_again_is_stopped(tmp_path: Path) -> None:
    _, toolbox = await _workspace_toolbox(tmp_path)
    a, b = "    start = page * per_page\n", "    start = (page - 1) * per_page\n"
    flips = [
        api.message(
            [api.tool_use("edit_file", {"path": "pager.py", "old_text": x, "new_text": y}, f"e{i}")], "tool_use"
        )
        for i, (x, y) in enumerate([(a, b), (b, a), (a, b), (b, a), (a, b)])
    ]
    with serve(api.scripted(flips)) as s, pytest.raises(ProviderError) as info:
        await run_agent(provider(s.url), toolbox, "sys", "task", 20, lambda t, w: None)
    assert "edits undone" in info.value.message
    assert "undid the one before it" in json.dumps(s.requests[2].json["messages"][-1])


async def test_a_retried_step_does_not_get_a_fresh_budget(tmp_path: Path) -> None:
    """Three attempts must not spend three budgets: what earlier attempts spent counts."""
    from tamma.models import Usage

    _, toolbox = await _workspace_toolbox(tmp_path)
    heavy = [api.message([api.tool_use("list_files", {}, f"t{i}")], "tool_use", input_tokens=4000) for i in range(5)]
    with serve(api.scripted(heavy)) as s, pytest.raises(BudgetExceeded):
        await run_agent(
            provider(s.url), toolbox, "sys", "task", 10, lambda t, w: None,
            budget=Budget(max_tokens=10_000), already=Usage(input_tokens=7_000),
        )  # fmt: skip
    assert len(s.requests) == 1  # 7,000 before + 4,000 now: over at the first turn


def _tool_results(request: Any) -> list[str]:
    """The tool_result contents of a Messages API request, oldest first."""
    return [
        str(block["content"] if isinstance(block["content"], str) else json.dumps(block["content"]))
        for m in request.json["messages"]
        if isinstance(m["content"], list)
        for block in m["content"]
        if block.get("type") == "tool_result"
    ]


async def test_a_conversation_nearing_the_window_has_its_old_outputs_elided(tmp_path: Path) -> None:
    """The stand-in reports a prompt of 130,000 tokens on turn 6 (over 0.6 of a 200,000 window):
    the next request carries the old file reads as one-line notes, the recent ones whole, the
    task and every call still there, each result still paired with its call."""
    from tamma.agent.condense import ELIDED

    ws, toolbox = await _workspace_toolbox(tmp_path)
    (ws.root / "pager.py").write_text((ws.root / "pager.py").read_text() + "".join(f"# note {i}\n" for i in range(300)))
    sizes = [10_000, 20_000, 30_000, 40_000, 50_000, 130_000, 20_000, 20_000]
    reads = [
        api.message(
            [api.tool_use("read_file", {"path": "pager.py", "start_line": i + 1}, f"r{i}")], "tool_use", input_tokens=n
        )
        for i, n in enumerate(sizes[:-1])
    ]
    replies = [*reads, api.message([api.text("done")], "end_turn", input_tokens=sizes[-1])]
    turns: list[str] = []
    with serve(api.scripted(replies)) as s:
        outcome = await run_agent(provider(s.url), toolbox, "sys", "the task", 20, lambda t, w: turns.append(w))
    assert outcome.summary == "done"
    assert any("condensed the conversation" in w for w in turns)
    before, after = _tool_results(s.requests[5]), _tool_results(s.requests[6])
    assert not any(r.startswith(ELIDED) for r in before)
    assert after[0].startswith(ELIDED) and "Call the tool again" in after[0]
    assert not after[-1].startswith(ELIDED) and "# note 299" in after[-1]  # the newest read is whole
    last = s.requests[-1].json["messages"]
    assert last[0]["content"] == "the task" or "the task" in json.dumps(last[0])
    calls = [
        b["id"] for m in last if isinstance(m["content"], list) for b in m["content"] if b.get("type") == "tool_use"
    ]
    paired = [
        b["tool_use_id"] for m in last if isinstance(m["content"], list) for b in m["content"]
        if b.get("type") == "tool_result"
    ]  # fmt: skip
    assert calls == paired == [f"r{i}" for i in range(len(reads))]


async def test_a_context_overflow_is_condensed_and_asked_again_not_a_failure(tmp_path: Path) -> None:
    ws, toolbox = await _workspace_toolbox(tmp_path)
    (ws.root / "pager.py").write_text((ws.root / "pager.py").read_text() + "".join(f"# note {i}\n" for i in range(300)))
    reads = [
        api.message([api.tool_use("read_file", {"path": "pager.py", "start_line": i + 1}, f"r{i}")], "tool_use")
        for i in range(4)
    ]
    too_long = api.error(400, "invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum")
    replies = [*reads, too_long, api.message([api.text("done")], "end_turn")]
    turns: list[str] = []
    with serve(api.scripted(replies)) as s:
        outcome = await run_agent(provider(s.url), toolbox, "sys", "the task", 20, lambda t, w: turns.append(w))
    assert outcome.summary == "done" and any("over the model's window" in w for w in turns)
    assert len(_tool_results(s.requests[5])) == 4 and _tool_results(s.requests[5])[0].startswith("[elided")


async def test_an_overflow_that_condensing_cannot_fix_names_the_setting(tmp_path: Path) -> None:
    _, toolbox = await _workspace_toolbox(tmp_path)
    too_long = api.error(400, "invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum")
    with serve(api.scripted([too_long])) as s, pytest.raises(ProviderError) as info:
        await run_agent(provider(s.url), toolbox, "sys", "the task", 20, lambda t, w: None)
    assert info.value.context_overflow and not info.value.retryable
    assert "context window" in info.value.message and "agent.context_window_tokens" in info.value.message
    assert len(s.requests) == 1


async def test_a_step_closes_its_providers_http_client_even_when_it_fails(tmp_path: Path) -> None:
    """Each step made a provider and left its SDK client to the garbage collector ("coroutine
    'AsyncClient.aclose' was never awaited", sockets kept until it ran); a worker runs thousands."""
    from tamma.activities.issue import _spending
    from tamma.providers.recording import RecordingProvider

    p = provider("http://127.0.0.1:9")
    async with _spending(p):
        pass
    assert p.client.is_closed()
    wrapped = provider("http://127.0.0.1:9")
    with pytest.raises(ProviderError):
        async with _spending(RecordingProvider(wrapped, tmp_path / "code-s1-a1.json", 1, [])):
            raise ProviderError("the step failed")
    assert wrapped.client.is_closed()


async def test_a_long_session_of_small_outputs_is_folded_into_a_digest_and_goes_on(tmp_path: Path) -> None:
    """Twelve turns of small reads (nothing worth eliding) and a prompt the stand-in counts at
    130,000 tokens: the next request starts with the task and a digest of the old turns, keeps
    the recent ones (each result after its call), and the session finishes. Then an overflow
    the API reports with nothing left to elide is folded and asked again, not a failure."""
    from tamma.agent.condense import DIGEST

    _, toolbox = await _workspace_toolbox(tmp_path)

    def read(i: int, name: str, lines: int) -> dict[str, Any]:
        return api.tool_use("read_file", {"path": "pager.py", "start_line": i + 1, "end_line": i + lines}, name)

    reads = [
        api.message(
            [api.text(f"Reading lines {i + 1}-{i + 3}."), read(i, f"r{i}", 3)],
            "tool_use",
            input_tokens=130_000 if i == 11 else 1_000 + i,
        )
        for i in range(12)
    ]
    turns: list[str] = []
    with serve(api.scripted([*reads, api.message([api.text("done")], "end_turn")])) as s:
        outcome = await run_agent(provider(s.url), toolbox, "sys", "the task", 30, lambda t, w: turns.append(w))
    assert outcome.summary == "done"
    assert any("folded old turns into a digest" in w for w in turns), turns
    folded = s.requests[-1].json["messages"]
    first = json.dumps(folded[0])
    assert "the task" in first and DIGEST in first and "read_file(path='pager.py', start_line=1, end_line=3)" in first
    assert len(folded) < len(s.requests[-2].json["messages"])
    blocks = [b for m in folded if isinstance(m["content"], list) for b in m["content"]]
    calls = [b["id"] for b in blocks if b.get("type") == "tool_use"]
    paired = [b["tool_use_id"] for b in blocks if b.get("type") == "tool_result"]
    assert calls == paired and calls[-1] == "r11" and "r0" not in calls

    too_long = api.error(400, "invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum")
    small = [api.message([read(i, f"q{i}", 2)], "tool_use") for i in range(5)]
    turns.clear()
    with serve(api.scripted([*small, too_long, api.message([api.text("done")], "end_turn")])) as s:
        outcome = await run_agent(provider(s.url), toolbox, "sys", "the task", 30, lambda t, w: turns.append(w))
    assert outcome.summary == "done" and any("over the model's window: folded old turns" in w for w in turns), turns
    assert DIGEST in json.dumps(s.requests[-1].json["messages"][0])
