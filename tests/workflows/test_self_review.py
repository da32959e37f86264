"""The optional self-review: a model reads the green branch's diff before the PR is opened; its
findings go back to the coding agent, bounded; its verdict is kept in the state."""

from __future__ import annotations

import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from tamma.activities import IssueActivities
from tamma.config import Settings
from tamma.models import Issue, IssueTaskInput, StepName, TaskState, TaskStatus
from tamma.platforms.local import LocalPlatform
from tamma.runtime.tasks import TaskService
from tests.conftest import keep_history, running_worker
from tests.transcripts import FIXED, comment_session, demo_exchanges, transcript_doc

FINDING = {
    "path": "pager.py",
    "line": 3,
    "problem": "The 1-based offset is not explained",
    "suggestion": "Add a comment saying pages start at 1",
}


def review(session: int, approve: bool, expect: list[str]) -> dict[str, Any]:
    return {
        "purpose": "review",
        "session": session,
        "expect": {"prompt_contains": expect},
        "response": {
            "approve": approve,
            "summary": "Fine." if approve else "One thing to fix.",
            "findings": [] if approve else [FINDING],
        },
    }


def transcript(path: Path, *, second_review_approves: bool = True) -> Path:
    expect = [
        "A reviewer read your change and asks for fixes first: One thing to fix.",
        "- pager.py:3: The 1-based offset is not explained",
        "  suggestion: Add a comment saying pages start at 1",
    ]
    exchanges = [
        *demo_exchanges(),
        # the reviewer sees the diff of iteration 1 against main, quoted as data
        review(1, False, ["<diff>", "-    start = page * per_page", "+" + FIXED.rstrip("\n")]),
        *comment_session(2, "pages start at 1", expect),
        review(2, second_review_approves, ["+    # pages start at 1"]),
    ]
    path.write_text(transcript_doc(exchanges))
    return path


def git(platform: LocalPlatform, *args: str) -> str:
    return subprocess.run(["git", "-C", str(platform.path), *args], capture_output=True, text=True, check=True).stdout


Runner = Callable[..., Awaitable[TaskState]]


@pytest.fixture
def run_issue(
    client: Client, task_queue: str, settings: Settings, activities: IssueActivities, demo: tuple[LocalPlatform, Issue]
) -> Runner:
    """Runs the demo issue with the self-review on, replaying `script`; returns the final state."""
    platform, issue = demo

    async def run(script: Path, **options: Any) -> TaskState:
        service = TaskService(client, task_queue)
        opts = settings.task_options(transcript=str(script), retry_initial_s=0.1, self_review=True, **options)
        async with running_worker(client, task_queue, activities, settings):
            inp = IssueTaskInput(repo=platform.repo, issue_number=issue.number, options=opts)
            wid, _ = await service.start(inp)
            return await service.result(wid)

    return run


async def test_findings_go_back_to_the_agent_then_the_approved_change_merges(
    client: Client, run_issue: Runner, demo: tuple[LocalPlatform, Issue], tmp_path: Path
) -> None:
    platform, _ = demo
    state = await run_issue(transcript(tmp_path / "t.json"))
    assert state.status == TaskStatus.MERGED, state.error
    assert "    # pages start at 1\n" + FIXED in git(platform, "show", "main:pager.py")
    reviews = [s.detail for s in state.steps if s.name == StepName.SELF_REVIEW]
    assert reviews == ["1 finding(s): One thing to fix.", "approved"]
    await keep_history(client, state.workflow_id, "self-review-round")
    assert state.self_review is not None and state.self_review.approve
    # the review ran before the PR existed, and the PR carries both iterations
    names = [s.name for s in state.steps]
    assert names.index(StepName.SELF_REVIEW) < names.index(StepName.OPEN_PR)
    assert StepName.SELF_REVIEW.value in state.usage_by_step


async def test_out_of_rounds_the_pr_still_opens_with_the_open_findings(run_issue: Runner, tmp_path: Path) -> None:
    script = transcript(tmp_path / "t.json", second_review_approves=False)
    state = await run_issue(script, auto_merge=False)
    assert state.status == TaskStatus.PR_OPEN, state.error
    assert state.self_review is not None and not state.self_review.approve
    assert state.self_review.findings[0].problem == FINDING["problem"]
    assert [s.detail for s in state.steps if s.name == StepName.SELF_REVIEW] == ["1 finding(s): One thing to fix."] * 2


def test_status_shows_the_open_findings() -> None:
    from rich.console import Console

    from tamma.cli.render import review_panel
    from tamma.models import SelfReview

    console = Console(width=200, record=True)
    console.print(
        review_panel(SelfReview.model_validate({"approve": False, "summary": "One thing.", "findings": [FINDING]}))
    )
    text = console.export_text()
    assert "Self-review: changes asked" in text and "One thing." in text
    assert "pager.py:3" in text and "The 1-based offset is not explained — Add a comment" in text
