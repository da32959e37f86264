"""The optional self-review: a model reads the green branch's diff before the PR is opened; its
findings go back to the coding agent, bounded; its verdict is kept in the state."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from temporalio.client import Client

from tamma.activities import IssueActivities
from tamma.config import Settings
from tamma.models import Issue, IssueTaskInput, StepName, TaskStatus
from tamma.platforms.local import LocalPlatform
from tamma.providers.scripted import DEMO_TRANSCRIPT
from tamma.runtime.tasks import TaskService
from tests.conftest import running_worker

FIXED = "    start = (page - 1) * per_page\n"
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
    doc = json.loads(DEMO_TRANSCRIPT.read_text())
    doc["exchanges"] += [
        # the reviewer sees the diff of iteration 1 against main, quoted as data
        review(1, False, ["<diff>", "-    start = page * per_page", "+" + FIXED.rstrip("\n")]),
        {
            "purpose": "code",
            "session": 2,
            "expect": {
                "prompt_contains": [
                    "A reviewer read your change and asks for fixes first: One thing to fix.",
                    "- pager.py:3: The 1-based offset is not explained",
                    "  suggestion: Add a comment saying pages start at 1",
                ]
            },
            "response": {
                "stop_reason": "tool_use",
                "tool_calls": [
                    {
                        "id": "s1",
                        "name": "edit_file",
                        "input": {
                            "path": "pager.py",
                            "old_text": FIXED,
                            "new_text": "    # pages start at 1\n" + FIXED,
                        },
                    }
                ],
            },
        },
        {
            "purpose": "code",
            "session": 2,
            "response": {"stop_reason": "tool_use", "tool_calls": [{"id": "s2", "name": "run_tests", "input": {}}]},
        },
        {"purpose": "code", "session": 2, "response": {"text": "Commented the offset.", "stop_reason": "end_turn"}},
        review(2, second_review_approves, ["+    # pages start at 1"]),
    ]
    path.write_text(json.dumps(doc))
    return path


def git(platform: LocalPlatform, *args: str) -> str:
    return subprocess.run(["git", "-C", str(platform.path), *args], capture_output=True, text=True, check=True).stdout


async def run(
    client: Client,
    task_queue: str,
    settings: Settings,
    activities: IssueActivities,
    platform: LocalPlatform,
    issue: Issue,
    script: Path,
    **options: Any,
) -> Any:
    service = TaskService(client, task_queue)
    opts = settings.task_options(transcript=str(script), retry_initial_s=0.1, self_review=True, **options)
    async with running_worker(client, task_queue, activities, settings):
        wid, _ = await service.start(IssueTaskInput(repo=platform.repo, issue_number=issue.number, options=opts))
        return await service.handle(wid).result()


async def test_findings_go_back_to_the_agent_then_the_approved_change_merges(
    client: Client,
    task_queue: str,
    settings: Settings,
    activities: IssueActivities,
    demo: tuple[LocalPlatform, Issue],
    tmp_path: Path,
) -> None:
    platform, issue = demo
    state = await run(client, task_queue, settings, activities, platform, issue, transcript(tmp_path / "t.json"))
    assert state.status == TaskStatus.MERGED, state.error
    assert "    # pages start at 1\n" + FIXED in git(platform, "show", "main:pager.py")
    reviews = [s.detail for s in state.steps if s.name == StepName.SELF_REVIEW]
    assert reviews == ["1 finding(s): One thing to fix.", "approved"]
    assert state.self_review is not None and state.self_review.approve
    # the review ran before the PR existed, and the PR carries both iterations
    names = [s.name for s in state.steps]
    assert names.index(StepName.SELF_REVIEW) < names.index(StepName.OPEN_PR)
    assert StepName.SELF_REVIEW.value in state.usage_by_step


async def test_out_of_rounds_the_pr_still_opens_with_the_open_findings(
    client: Client,
    task_queue: str,
    settings: Settings,
    activities: IssueActivities,
    demo: tuple[LocalPlatform, Issue],
    tmp_path: Path,
) -> None:
    platform, issue = demo
    script = transcript(tmp_path / "t.json", second_review_approves=False)
    state = await run(client, task_queue, settings, activities, platform, issue, script, auto_merge=False)
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
