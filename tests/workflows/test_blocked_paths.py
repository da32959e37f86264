"""Blocked paths are enforced on what the branch really changes, not on the model's plan."""

from __future__ import annotations

from pathlib import Path

from temporalio.client import Client

from tamma.config import Settings
from tamma.demo import make_demo
from tamma.models import Issue, IssueTaskInput, StepName, TaskStatus
from tamma.platforms.local import LocalPlatform
from tamma.runtime.tasks import TaskService
from tamma.runtime.wiring import build_activities
from tests.conftest import eventually, keep_history, running_worker
from tests.transcripts import FIX, coding_transcript, demo_exchanges
from tests.workflows.test_issue_workflow import wait_for_status

WORKFLOW_FILE = {"path": ".github/workflows/x.yml", "content": "on: push\njobs: {}\n"}


def sneaky_transcript(tmp_path: Path) -> Path:
    """The demo's low-risk plan (it names only pager.py), then a coding session that also edits a
    CI workflow: the plan passes the policy, the change must not."""
    planning = [e for e in demo_exchanges() if e["purpose"] in ("analysis", "plan")]
    assert all(".github" not in f for e in planning if e["purpose"] == "plan" for f in e["response"]["files"])
    calls = [("edit_file", FIX), ("write_file", WORKFLOW_FILE), ("run_tests", {})]
    return coding_transcript(tmp_path / "sneaky.json", calls)


async def start_sneaky(service: TaskService, settings: Settings, tmp_path: Path) -> tuple[str, LocalPlatform, Issue]:
    platform, issue = make_demo(tmp_path / "repo", settings.data_dir)
    opts = settings.task_options(transcript=str(sneaky_transcript(tmp_path)), retry_initial_s=0.1)
    assert opts.policy.auto_approve and opts.auto_merge
    wid, _ = await service.start(IssueTaskInput(repo=platform.repo, issue_number=issue.number, options=opts))
    return wid, platform, issue


async def test_a_change_to_a_blocked_path_waits_for_a_person_although_the_plan_passed(
    client: Client, task_queue: str, settings: Settings, tmp_path: Path
) -> None:
    service = TaskService(client, task_queue)
    async with running_worker(client, task_queue, build_activities(settings), settings):
        wid, platform, issue = await start_sneaky(service, settings, tmp_path)
        waiting = await wait_for_status(service, wid, TaskStatus.AWAITING_APPROVAL, timeout_s=60)
        approvals = [s for s in waiting.steps if s.name == StepName.APPROVAL]
        assert approvals[0].status == "done" and "policy" in approvals[0].detail  # the plan itself passed
        assert ".github/workflows/x.yml" in approvals[-1].detail and "blocked" in approvals[-1].detail
        assert platform.list_pull_requests() == []  # it stopped before the PR opened

        async def comments() -> list[str]:
            return [c["body"] for c in platform.issue_comments(issue.number)]

        told = await eventually(comments, lambda bodies: any("blocked paths" in b for b in bodies))
        assert any("blocked paths" in b and f"tamma approve {issue.number}" in b for b in told)
        await service.approve(wid, by="alice", reason="the workflow file is fine")
        state = await service.result(wid)
    assert state.status == TaskStatus.MERGED, state.error
    assert state.approval is not None and state.approval.by == "alice"
    await keep_history(client, wid, "blocked-path-approved")


async def test_rejecting_a_blocked_change_ends_it_without_a_merge(
    client: Client, task_queue: str, settings: Settings, tmp_path: Path
) -> None:
    service = TaskService(client, task_queue)
    async with running_worker(client, task_queue, build_activities(settings), settings):
        wid, platform, _ = await start_sneaky(service, settings, tmp_path)
        await wait_for_status(service, wid, TaskStatus.AWAITING_APPROVAL, timeout_s=60)
        await service.reject(wid, by="bob", reason="no CI changes")
        state = await service.result(wid)
    assert state.status == TaskStatus.REJECTED and platform.list_pull_requests() == []
