"""The issue workflow on the local platform, against the real dev server and real git."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from tamma.activities import IssueActivities
from tamma.config import Settings
from tamma.errors import InvalidInputError, NotFoundError, PlatformError, TammaError
from tamma.models import ApprovalPolicy, Issue, IssueTaskInput, TaskState, TaskStatus
from tamma.platforms.local import LocalPlatform
from tamma.providers.scripted import DEMO_TRANSCRIPT
from tamma.runtime.tasks import TaskService
from tamma.runtime.wiring import build_activities
from tests.conftest import eventually, keep_history, running_worker


def git(repo: LocalPlatform, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo.path), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


async def test_issue_becomes_merged_branch(
    client: Client, task_queue: str, settings: Settings, activities: IssueActivities, demo: tuple[LocalPlatform, Issue]
) -> None:
    platform, issue = demo
    service = TaskService(client, task_queue)
    inp = IssueTaskInput(
        repo=platform.repo, issue_number=issue.number, options=settings.task_options(transcript=str(DEMO_TRANSCRIPT))
    )
    async with running_worker(client, task_queue, activities, settings):
        wid, created = await service.start(inp)
        state = await service.result(wid)
    assert created
    assert state.status == TaskStatus.MERGED, state.error
    described = await service.handle(wid).describe()
    assert described.status == WorkflowExecutionStatus.COMPLETED
    # the final details stay with the run (its memo), readable with no worker running
    assert "**Status:** `merged`" in await described.memo_value("tamma_details", type_hint=str)
    await keep_history(client, wid, "merged")
    await keep_history(client, wid, "merged-details-memo")  # recorded on the patch's new path
    assert "(page - 1)" in git(platform, "show", "main:pager.py")
    assert git(platform, "log", "-1", "--format=%s", "main").startswith("Merge !1")
    assert state.tests[-1].passed
    [pr] = platform.list_pull_requests()
    assert pr.state == "merged" and pr.merge_sha == git(platform, "rev-parse", "main")


def demo_input(platform: LocalPlatform, issue: Issue, settings: Settings, **options: object) -> IssueTaskInput:
    opts = settings.task_options(transcript=str(DEMO_TRANSCRIPT), retry_initial_s=0.1, **options)
    return IssueTaskInput(repo=platform.repo, issue_number=issue.number, options=opts)


def needs_approval(settings: Settings) -> ApprovalPolicy:
    return settings.approval.model_copy(update={"auto_approve": False})


async def wait_for_status(service: TaskService, wid: str, status: TaskStatus, timeout_s: float = 20) -> TaskState:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        state = await service.state(wid)
        if state.status == status:
            return state
        assert asyncio.get_running_loop().time() < deadline, f"still {state.status} at {state.step}"
        await asyncio.sleep(0.1)


async def test_approval_by_update_then_second_approval_refused(
    client: Client, task_queue: str, settings: Settings, activities: IssueActivities, demo: tuple[LocalPlatform, Issue]
) -> None:
    platform, issue = demo
    service = TaskService(client, task_queue)
    async with running_worker(client, task_queue, activities, settings):
        wid, _ = await service.start(demo_input(platform, issue, settings, policy=needs_approval(settings)))
        waiting = await wait_for_status(service, wid, TaskStatus.AWAITING_APPROVAL)
        assert waiting.plan is not None and "auto-approval is off" in waiting.steps[-1].detail
        assert not await _branch_exists(platform)  # nothing is done before the decision
        await service.approve(wid, by="alice", reason="looks right")
        with pytest.raises(InvalidInputError, match="already approved by alice"):
            await service.approve(wid, by="bob")
        state = await service.result(wid)
    assert state.status == TaskStatus.MERGED
    assert state.approval is not None and state.approval.by == "alice" and not state.approval.automatic
    with pytest.raises(InvalidInputError, match="not running"):
        await service.approve(wid, by="late")


async def test_rejection_ends_without_branch_and_comments(
    client: Client, task_queue: str, settings: Settings, activities: IssueActivities, demo: tuple[LocalPlatform, Issue]
) -> None:
    platform, issue = demo
    service = TaskService(client, task_queue)
    async with running_worker(client, task_queue, activities, settings):
        wid, _ = await service.start(demo_input(platform, issue, settings, policy=needs_approval(settings)))
        await wait_for_status(service, wid, TaskStatus.AWAITING_APPROVAL)
        with pytest.raises(InvalidInputError, match="needs a reason"):
            await service.reject(wid, by="carol", reason=" ")
        await service.reject(wid, by="carol", reason="touches the public API")
        state = await service.result(wid)
    assert state.status == TaskStatus.REJECTED
    await keep_history(client, wid, "rejected")
    assert not await _branch_exists(platform)
    assert "rejected by carol: touches the public API" in platform.issue_comments(issue.number)[-1]["body"]
    # The Web UI tells the truth: a rejected task is a failed execution, the reason its message...
    assert (await service.handle(wid).describe()).status == WorkflowExecutionStatus.FAILED
    with pytest.raises(WorkflowFailureError) as failed:
        await service.handle(wid).result()
    assert isinstance(failed.value.cause, ApplicationError)
    assert failed.value.cause.message == "rejected: rejected by carol: touches the public API"
    # ...and its final state is still there for `tamma status` and the API, with no worker running
    again = await service.state(wid)
    assert again.status == TaskStatus.REJECTED and [s.name for s in again.steps] == [s.name for s in state.steps]


async def test_approval_timeout_escalates(
    client: Client, task_queue: str, settings: Settings, activities: IssueActivities, demo: tuple[LocalPlatform, Issue]
) -> None:
    platform, issue = demo
    service = TaskService(client, task_queue)
    async with running_worker(client, task_queue, activities, settings):
        wid, _ = await service.start(
            demo_input(platform, issue, settings, policy=needs_approval(settings), approval_timeout_s=1)
        )
        state = await service.result(wid)
    assert state.status == TaskStatus.ESCALATED
    await keep_history(client, wid, "escalated")
    assert "escalated" in platform.issue_comments(issue.number)[-1]["body"]
    rows = await eventually(lambda: service.list(status="escalated", repository=platform.repo.key), lambda r: r)
    [row] = rows
    assert row.workflow_id == wid


async def test_two_starts_reach_one_workflow(
    client: Client, task_queue: str, settings: Settings, activities: IssueActivities, demo: tuple[LocalPlatform, Issue]
) -> None:
    platform, issue = demo
    service = TaskService(client, task_queue)
    inp = demo_input(platform, issue, settings, policy=needs_approval(settings))
    results = await asyncio.gather(service.start(inp), service.start(inp), service.start(inp))
    wids = {wid for wid, _ in results}
    assert len(wids) == 1
    [wid] = wids

    async def runs_of() -> list[object]:
        return [wf async for wf in client.list_workflows(f"WorkflowId = '{wid}'")]

    runs = await eventually(runs_of, lambda r: len(r) >= 1)
    await asyncio.sleep(0.5)  # a twin, had one been started, would be listed by now too
    assert len(runs) == 1 and len(await runs_of()) == 1
    async with running_worker(client, task_queue, activities, settings):
        await wait_for_status(service, wid, TaskStatus.AWAITING_APPROVAL)
        again, created = await service.start(inp)  # a later start attaches
        assert (again, created) == (wid, False)
        await service.approve(wid, by="alice")
        assert (await service.result(wid)).status == TaskStatus.MERGED
    # A finished, merged issue is not redone by a plain start.
    assert await service.start(inp) == (wid, False)


async def test_cancel(
    client: Client, task_queue: str, settings: Settings, activities: IssueActivities, demo: tuple[LocalPlatform, Issue]
) -> None:
    platform, issue = demo
    service = TaskService(client, task_queue)
    async with running_worker(client, task_queue, activities, settings):
        wid, _ = await service.start(demo_input(platform, issue, settings, policy=needs_approval(settings)))
        await wait_for_status(service, wid, TaskStatus.AWAITING_APPROVAL)
        await service.cancel(wid)
        await wait_for_status(service, wid, TaskStatus.CANCELLED)
        with pytest.raises(InvalidInputError, match="already finished"):
            await service.cancel(wid)


class WrappedPlatform:
    """A real LocalPlatform with one method replaced by the subclass; everything else passes through."""

    def __init__(self, inner: LocalPlatform) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


class StuckPlatform(WrappedPlatform):
    """get_issue hangs until released (a slow forge)."""

    def __init__(self, inner: LocalPlatform) -> None:
        super().__init__(inner)
        self.release = asyncio.Event()

    async def get_issue(self, number: int) -> Issue:
        await asyncio.wait_for(self.release.wait(), timeout=30)
        return await self.inner.get_issue(number)


async def test_cancel_while_a_step_runs_is_a_cancellation_not_a_failure(
    client: Client, task_queue: str, settings: Settings, activities: IssueActivities, demo: tuple[LocalPlatform, Issue]
) -> None:
    platform, issue = demo
    stuck = StuckPlatform(platform)
    activities.platforms = lambda repo: stuck  # type: ignore[assignment,return-value]
    service = TaskService(client, task_queue)
    async with running_worker(client, task_queue, activities, settings):
        try:
            wid, _ = await service.start(demo_input(platform, issue, settings))
            await eventually(lambda: service.state(wid), lambda s: bool(s.steps) and s.steps[-1].status == "running")
            await service.cancel(wid)
            state = await wait_for_status(service, wid, TaskStatus.CANCELLED)
        finally:
            stuck.release.set()
    assert state.steps[-1].name == "fetch issue" and state.steps[-1].detail == "cancelled"
    assert (await service.handle(wid).describe()).status == WorkflowExecutionStatus.CANCELED


class FlakyPlatform(WrappedPlatform):
    """get_issue fails `failures` times first, counting calls."""

    def __init__(self, inner: LocalPlatform, failures: int, error: type[TammaError] = PlatformError) -> None:
        super().__init__(inner)
        self.failures, self.error, self.calls = failures, error, 0

    async def get_issue(self, number: int) -> Issue:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error(f"simulated failure {self.calls}")
        return await self.inner.get_issue(number)


async def test_activity_failing_twice_then_succeeding(
    client: Client, task_queue: str, settings: Settings, activities: IssueActivities, demo: tuple[LocalPlatform, Issue]
) -> None:
    platform, issue = demo
    flaky = FlakyPlatform(platform, failures=2)
    activities.platforms = lambda repo: flaky  # type: ignore[assignment,return-value]
    service = TaskService(client, task_queue)
    async with running_worker(client, task_queue, activities, settings):
        wid, _ = await service.start(demo_input(platform, issue, settings))
        state = await service.result(wid)
    assert state.status == TaskStatus.MERGED
    assert flaky.calls == 3


async def test_non_retryable_failure_fails_fast_with_message(
    client: Client, task_queue: str, settings: Settings, activities: IssueActivities, demo: tuple[LocalPlatform, Issue]
) -> None:
    platform, issue = demo
    flaky = FlakyPlatform(platform, failures=5, error=NotFoundError)
    activities.platforms = lambda repo: flaky  # type: ignore[assignment,return-value]
    service = TaskService(client, task_queue)
    async with running_worker(client, task_queue, activities, settings):
        wid, _ = await service.start(demo_input(platform, issue, settings))
        state = await service.result(wid)
    assert state.status == TaskStatus.FAILED
    assert flaky.calls == 1
    assert "fetch_issue failed: simulated failure 1" in state.error
    assert state.steps[-1].status == "failed"


async def test_diverged_transcript_fails_loudly(
    client: Client, task_queue: str, settings: Settings, activities: IssueActivities, demo: tuple[LocalPlatform, Issue]
) -> None:
    platform, _ = demo
    other = platform.create_issue("Add a dark mode", "Users want a dark theme.")
    service = TaskService(client, task_queue)
    async with running_worker(client, task_queue, activities, settings):
        wid, _ = await service.start(demo_input(platform, other, settings))
        state = await service.result(wid)
    assert state.status == TaskStatus.FAILED
    assert "diverged from transcript" in state.error and "does not mention 'off-by-one'" in state.error
    # it failed in analyse, before any progress comment: the issue still hears how it ended
    progress = platform.progress(other.number)
    assert "status: `failed`" in progress and "Ended:" in progress and "diverged" in progress
    await keep_history(client, wid, "failed-in-analyse")


async def test_failing_tests_are_retried_with_feedback_then_fail_bounded(
    client: Client, task_queue: str, settings: Settings, demo: tuple[LocalPlatform, Issue]
) -> None:
    platform, issue = demo
    # A test command that always fails: the fix loop must run max_fix_attempts + 1 times, then stop.
    failing = settings.model_copy(update={"agent": settings.agent.model_copy(update={"test_command": "false"})})
    acts = build_activities(failing)
    service = TaskService(client, task_queue)
    async with running_worker(client, task_queue, acts, failing):
        wid, _ = await service.start(demo_input(platform, issue, failing, max_fix_attempts=0))
        state = await service.result(wid)
    assert state.status == TaskStatus.FAILED
    assert "tests still fail after 1 attempts" in state.error
    await keep_history(client, wid, "tests-fail")
    assert len(state.tests) == 1 and not state.tests[0].passed
    assert platform.list_pull_requests() == []


async def _branch_exists(platform: LocalPlatform) -> bool:
    done = subprocess.run(
        ["git", "-C", str(platform.path), "rev-parse", "--verify", "tamma/issue-1"], capture_output=True, check=False
    )
    return done.returncode == 0


async def test_a_decision_no_worker_takes_is_queued_then_taken_when_one_returns(
    client: Client, task_queue: str, settings: Settings, activities: IssueActivities, demo: tuple[LocalPlatform, Issue]
) -> None:
    """Temporal lists a killed worker as a poller for minutes, so "a worker serves the queue" can
    be wrong: the update then waits for nobody. It must answer within seconds that the decision
    is queued — never fail after minutes — and the decision must count when a worker returns."""
    from tamma.errors import DecisionQueued

    platform, issue = demo
    service = TaskService(client, task_queue)
    async with running_worker(client, task_queue, activities, settings):
        wid, _ = await service.start(demo_input(platform, issue, settings, policy=needs_approval(settings)))
        await wait_for_status(service, wid, TaskStatus.AWAITING_APPROVAL)
    # the worker is gone; the server may still list it (as it does for a SIGKILLed one)
    stale = TaskService(client, task_queue)
    stale.decide_timeout_s = 2.0

    from datetime import UTC, datetime

    from tamma.runtime.presence import Presence, Seen

    async def listed_as_serving() -> Presence:  # a worker killed a moment ago: still fresh
        now = datetime.now(UTC)
        queues = (task_queue, f"{task_queue}-heavy")
        return Presence(queues, tuple(Seen("tamma-worker-1@gone", q, now, True, "heartbeat") for q in queues))

    stale.presence = listed_as_serving  # type: ignore[method-assign]
    started = asyncio.get_running_loop().time()
    with pytest.raises(DecisionQueued, match="queued and takes effect when a worker returns"):
        await stale.approve(wid, by="alice", reason="go")
    assert asyncio.get_running_loop().time() - started < 6
    async with running_worker(client, task_queue, activities, settings):
        state = await service.result(wid)
    assert state.status == TaskStatus.MERGED
    assert state.approval is not None and state.approval.by == "alice"


async def test_a_merge_window_merges_when_nobody_objects_and_not_when_a_reviewer_does(
    client: Client, task_queue: str, settings: Settings, activities: IssueActivities, tmp_path: Path
) -> None:
    """workflow.merge_delay_s: the merge waits out a window; a trusted review comment arriving in
    it (its webhook nudges the task) is an objection, and the PR is left open for people."""
    from tamma.demo import make_demo
    from tamma.models import EventNote, StepName

    service = TaskService(client, task_queue)
    quiet, issue = make_demo(tmp_path / "quiet", settings.data_dir)
    objected, other = make_demo(tmp_path / "objected", settings.data_dir)
    async with running_worker(client, task_queue, activities, settings):
        calm, _ = await service.start(demo_input(quiet, issue, settings, merge_delay_s=1.0))
        contested, _ = await service.start(demo_input(objected, other, settings, merge_delay_s=120.0))
        for _ in range(300):
            state = await service.state(contested)
            window = [r for r in state.steps if r.name == StepName.MERGE]
            if window and "unless a reviewer objects" in window[-1].detail:
                break
            await asyncio.sleep(0.1)
        assert window and window[-1].status == "running", state.steps
        pr = objected.list_pull_requests()[0]
        objected.add_review_comment(pr.number, "alice", "Hold on: page 0 should raise")
        await service.handle(contested).signal("ci_event", EventNote(kind="review submitted", delivery="obj-1"))
        held = await service.result(contested)
        merged = await service.result(calm)
        await keep_history(client, contested, "merge-window-objection")
    assert merged.status == TaskStatus.MERGED
    assert [r.detail for r in merged.steps if r.name == StepName.MERGE][0] == "no objection in 1s"
    assert held.status == TaskStatus.PR_OPEN and "objected during the merge window" in held.error + str(held.steps)
    assert "page * per_page" in git(objected, "show", "main:pager.py")  # nothing merged


async def test_a_runner_tamma_cannot_read_merges_only_when_its_exit_code_moved(
    client: Client, task_queue: str, settings: Settings, tmp_path: Path
) -> None:
    """Output Tamma cannot read (here: the runner's hidden) leaves only the exit code. The demo's
    test fails on the base commit and passes after the fix: evidence, merged. A command that
    passes before and after (`true`) shows nothing: it used to merge; now a person decides."""
    from tamma.demo import make_demo
    from tamma.models import StepName

    service = TaskService(client, task_queue)

    def hidden(command: str) -> Settings:
        return settings.model_copy(update={"agent": settings.agent.model_copy(update={"test_command": command})})

    moved = hidden("python3 -m unittest discover >/dev/null 2>&1")
    silent = hidden("true")
    a, issue_a = make_demo(tmp_path / "a", settings.data_dir)
    b, issue_b = make_demo(tmp_path / "b", settings.data_dir)
    async with running_worker(client, task_queue, build_activities(moved), moved):
        merged = await service.result((await service.start(demo_input(a, issue_a, moved)))[0])
    async with running_worker(client, task_queue, build_activities(silent), silent):
        wid, _ = await service.start(demo_input(b, issue_b, silent))
        waiting = await wait_for_status(service, wid, TaskStatus.AWAITING_APPROVAL, timeout_s=60)
        await service.reject(wid, by="test", reason="nothing tested it")
        await service.result(wid)
    assert merged.status == TaskStatus.MERGED and "made it pass" in merged.tests[-1].summary
    gate = [s for s in waiting.steps if s.name == StepName.APPROVAL][-1]
    assert waiting.tests[-1].untested and "untested" in gate.detail and "agent.test_command" in gate.detail
