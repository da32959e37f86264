"""The issue workflow with real provider SDKs talking to protocol stand-ins on 127.0.0.1:
the same loop as the demo, model usage accounted, exchanges recorded and replayable,
budgets enforced, secrets kept out of every request."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import pytest
from temporalio.client import Client

from tamma.config import LLMSettings, Settings
from tamma.demo import make_demo
from tamma.errors import InvalidInputError
from tamma.models import Budget, IssueTaskInput, TaskState, TaskStatus
from tamma.platforms.local import LocalPlatform
from tamma.providers.recording import compile_recording
from tamma.runtime.tasks import TaskService
from tamma.runtime.wiring import build_activities
from tests.conftest import keep_history, running_worker
from tests.standins import anthropic_api
from tests.standins.demo_brain import anthropic_brain, openai_brain
from tests.standins.http import Reply, Request, serve
from tests.workflows.test_issue_workflow import wait_for_status

KEY = "sk-ant-e2e-0123456789"
PLANTED = "sk-planted-never-leak-42"


def with_llm(settings: Settings, **llm: object) -> Settings:
    agent = settings.agent.model_copy(update={"test_command": "env; python3 -m unittest discover"})
    return settings.model_copy(update={"llm": LLMSettings.model_validate(llm), "agent": agent})


async def run_issue(
    client: Client, task_queue: str, settings: Settings, platform: LocalPlatform, number: int, **options: object
) -> TaskState:
    service = TaskService(client, task_queue)
    opts = settings.task_options(retry_initial_s=0.2, **options)
    async with running_worker(client, task_queue, build_activities(settings), settings):
        wid, _ = await service.start(IssueTaskInput(repo=platform.repo, issue_number=number, options=opts), rerun=True)
        return await service.result(wid)


async def test_anthropic_drives_the_loop_records_and_replays(
    client: Client, task_queue: str, settings: Settings, tmp_path: Path
) -> None:
    platform, issue = make_demo(tmp_path / "repo", settings.data_dir)
    with serve(anthropic_brain(KEY)) as standin:
        s = with_llm(
            settings,
            anthropic_api_key=KEY,
            anthropic_base_url=standin.url,
            openai_api_key=PLANTED,
            model="claude-sonnet-4-6",
        )
        state = await run_issue(client, task_queue, s, platform, issue.number)
    assert state.status == TaskStatus.MERGED, state.error
    assert len(standin.requests) == 6  # analysis, plan, four coding turns
    assert state.usage.calls == 6 and state.usage.input_tokens == 600 and state.usage.output_tokens == 120
    assert state.usage_by_step["implement"].calls == 4 and state.usage.agent_turns == 4
    assert state.usage.cost_usd > 0
    # Secrets: the sandbox printed its whole environment into a tool result the model saw,
    # yet neither key reaches any request body or any recording.
    bodies = b"".join(r.raw for r in standin.requests)
    assert b"PASSED" in bodies and b"PATH=" in bodies
    assert KEY.encode() not in bodies and PLANTED.encode() not in bodies
    recordings = [Path(p) for p in state.transcripts]
    assert len(recordings) == 3 and all(p.exists() for p in recordings)
    recorded = "".join(p.read_text() for p in recordings)
    assert KEY not in recorded and PLANTED not in recorded and "paginate" in recorded
    # Replay the recording offline on a fresh copy of the same repository: same outcome, no model.
    replay_platform, replay_issue = make_demo(tmp_path / "replay", settings.data_dir)
    transcript = compile_recording(recordings[0].parent, tmp_path / "replay.json")
    replayed = await run_issue(
        client, task_queue, settings, replay_platform, replay_issue.number, transcript=str(transcript)
    )
    assert replayed.status == TaskStatus.MERGED, replayed.error
    assert [(x.name, x.status) for x in replayed.steps] == [(x.name, x.status) for x in state.steps]
    assert replayed.usage.tokens == state.usage.tokens
    show = ["git", "show", "main:pager.py"]
    assert (
        subprocess.run([*show[:1], "-C", str(replay_platform.path), *show[1:]], capture_output=True).stdout
        == subprocess.run([*show[:1], "-C", str(platform.path), *show[1:]], capture_output=True).stdout
    )


async def test_openai_compatible_local_server_drives_the_loop(
    client: Client, task_queue: str, settings: Settings, tmp_path: Path
) -> None:
    platform, issue = make_demo(tmp_path / "repo", settings.data_dir)
    with serve(openai_brain()) as standin:
        s = with_llm(settings, provider="openai", openai_base_url=f"{standin.url}/v1", model="qwen2.5-coder")
        state = await run_issue(client, task_queue, s, platform, issue.number)
    assert state.status == TaskStatus.MERGED, state.error
    assert {r.json["model"] for r in standin.requests} == {"qwen2.5-coder"}
    assert state.usage.calls == 6 and state.usage.cost_usd == 0  # no price known for a local model


async def test_per_step_model_choice(client: Client, task_queue: str, settings: Settings, tmp_path: Path) -> None:
    platform, issue = make_demo(tmp_path / "repo", settings.data_dir)
    with serve(anthropic_brain(KEY)) as standin:
        s = with_llm(
            settings,
            anthropic_api_key=KEY,
            anthropic_base_url=standin.url,
            model="claude-sonnet-4-6",
            steps={"analysis": {"model": "claude-haiku-4-5"}},
        )
        state = await run_issue(client, task_queue, s, platform, issue.number)
    assert state.status == TaskStatus.MERGED
    assert [r.json["model"] for r in standin.requests][:2] == ["claude-haiku-4-5", "claude-sonnet-4-6"]


async def test_self_review_on_its_own_provider_and_model(
    client: Client, task_queue: str, settings: Settings, tmp_path: Path
) -> None:
    platform, issue = make_demo(tmp_path / "repo", settings.data_dir)
    with serve(anthropic_brain(KEY)) as claude, serve(openai_brain()) as local:
        s = with_llm(
            settings,
            anthropic_api_key=KEY,
            anthropic_base_url=claude.url,
            openai_base_url=f"{local.url}/v1",
            model="claude-sonnet-4-6",
            steps={"review": {"provider": "openai", "model": "qwen2.5-coder-32b"}},
        )
        state = await run_issue(client, task_queue, s, platform, issue.number, self_review=True)
    assert state.status == TaskStatus.MERGED, state.error
    assert len(claude.requests) == 6 and len(local.requests) == 1  # only the review went to the local server
    [review] = local.requests
    assert review.json["model"] == "qwen2.5-coder-32b"
    assert review.json["tools"][0]["function"]["parameters"]["title"] == "SelfReview"
    prompt = review.json["messages"][-1]["content"]
    assert "<diff>" in prompt and "+    start = (page - 1) * per_page" in prompt
    assert state.self_review is not None and state.self_review.approve
    assert state.usage_by_step["self-review"].calls == 1


async def test_rate_limited_call_waits_and_succeeds(
    client: Client, task_queue: str, settings: Settings, tmp_path: Path
) -> None:
    platform, issue = make_demo(tmp_path / "repo", settings.data_dir)
    limited: list[Request] = []

    def once_429(req: Request) -> Reply | None:
        if not limited:
            limited.append(req)
            return anthropic_api.error(429, "rate_limit_error", "Number of requests exceeded", {"retry-after": "1"})
        return None

    with serve(anthropic_brain(KEY, before=once_429)) as standin:
        s = with_llm(settings, anthropic_api_key=KEY, anthropic_base_url=standin.url)
        state = await run_issue(client, task_queue, s, platform, issue.number)
    assert state.status == TaskStatus.MERGED, state.error
    assert len(limited) == 1 and len(standin.requests) == 7  # the limited call was made again


async def test_budget_exhausted_mid_session_stops_cleanly(
    client: Client, task_queue: str, settings: Settings, tmp_path: Path
) -> None:
    platform, issue = make_demo(tmp_path / "repo", settings.data_dir)
    with serve(anthropic_brain(KEY, input_tokens=100, output_tokens=20)) as standin:
        s = with_llm(settings, anthropic_api_key=KEY, anthropic_base_url=standin.url)
        state = await run_issue(client, task_queue, s, platform, issue.number, budget=Budget(max_tokens=500))
    assert state.status == TaskStatus.BUDGET_EXCEEDED
    await keep_history(client, state.workflow_id, "budget-exceeded")
    assert "tokens budget ran out" in state.error
    assert len(standin.requests) == 5  # analysis, plan, then coding stopped on its third turn
    assert state.usage.tokens == 600  # the spend of the interrupted session is still accounted
    assert platform.list_pull_requests() == []


async def test_bad_key_fails_fast_naming_the_setting(
    client: Client, task_queue: str, settings: Settings, tmp_path: Path
) -> None:
    platform, issue = make_demo(tmp_path / "repo", settings.data_dir)
    with serve(anthropic_brain(KEY)) as standin:
        s = with_llm(settings, anthropic_api_key="sk-ant-revoked", anthropic_base_url=standin.url)
        state = await run_issue(client, task_queue, s, platform, issue.number)
    assert state.status == TaskStatus.FAILED and "ANTHROPIC_API_KEY" in state.error
    assert "sk-ant-revoked" not in state.model_dump_json()
    assert len(standin.requests) == 1  # non-retryable: no second attempt


async def test_usage_of_a_failed_attempt_still_counts(
    client: Client, task_queue: str, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The coding step's first attempt is billed for two turns, then the model server fails; the
    retry runs the whole session (four turns). The task's totals are what the server billed: 8
    answers, not the 6 of the attempts that succeeded. (The loop retries a transient failure in
    place first — tests/providers/test_anthropic.py — so that is turned off here, to make the
    step's attempt fail as one that ran out of in-place retries does.)"""
    from tamma.agent import loop

    monkeypatch.setattr(loop, "TRANSIENT_WAITS", ())
    platform, issue = make_demo(tmp_path / "repo", settings.data_dir)
    seen: list[Request] = []

    def fail_the_fifth(req: Request) -> Reply | None:
        seen.append(req)
        if len(seen) == 5:  # analysis, plan, two coding turns, then this
            return anthropic_api.error(500, "api_error", "Internal server error")
        return None

    with serve(anthropic_brain(KEY, before=fail_the_fifth)) as standin:
        s = with_llm(settings, anthropic_api_key=KEY, anthropic_base_url=standin.url)
        state = await run_issue(client, task_queue, s, platform, issue.number)
    assert state.status == TaskStatus.MERGED, state.error
    billed = len(standin.requests) - 1  # every answer but the 500
    assert billed == 8
    assert state.usage.calls == billed and state.usage.input_tokens == 100 * billed
    assert state.usage_by_step["implement"].calls == 6


async def test_a_sustained_rate_limit_parks_the_task_then_resume_finishes_it(
    client: Client, task_queue: str, settings: Settings, tmp_path: Path
) -> None:
    """The model answers 429 until the test lifts the limit. The step waits in place (up to
    llm.rate_limit_inline_s), then on durable timers (up to workflow.rate_limit_horizon_s), then
    parks: visible, with how to resume. Nothing fails; `resume` runs the step again."""
    platform, issue = make_demo(tmp_path / "repo", settings.data_dir)
    lifted = False
    limited: list[Request] = []

    def limit(req: Request) -> Reply | None:
        if lifted:
            return None
        limited.append(req)
        reset = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 1))
        headers = {"anthropic-ratelimit-requests-remaining": "0", "anthropic-ratelimit-requests-reset": reset}
        return anthropic_api.error(429, "rate_limit_error", "Number of request tokens has exceeded", headers)

    with serve(anthropic_brain(KEY, before=limit)) as standin:
        s = with_llm(settings, anthropic_api_key=KEY, anthropic_base_url=standin.url, rate_limit_inline_s=1)
        service = TaskService(client, task_queue)
        opts = s.task_options(retry_initial_s=0.2, rate_limit_horizon_s=3)
        async with running_worker(client, task_queue, build_activities(s), s):
            wid, _ = await service.start(IssueTaskInput(repo=platform.repo, issue_number=issue.number, options=opts))
            parked = await wait_for_status(service, wid, TaskStatus.PARKED, timeout_s=60)
            assert "rate_limit_horizon_s" in parked.parked_reason and "tamma retry 1" in parked.parked_reason
            assert parked.steps[-1].name == "analyse" and parked.steps[-1].status == "running"  # not failed
            assert len(limited) >= 4  # asked again in place and after each durable wait, not once
            waits = len(limited)
            await asyncio.sleep(1.5)
            assert len(limited) == waits  # parked: nothing hammers the limited key
            lifted = True
            await service.resume(wid, by="alice")
            state = await service.result(wid)
            with pytest.raises(InvalidInputError, match="not running"):
                await service.resume(wid, by="alice")
    assert state.status == TaskStatus.MERGED, state.error
    assert state.parked_reason == "" and state.usage.calls == 6  # the 429s cost nothing
    await keep_history(client, wid, "parked-then-resumed")
