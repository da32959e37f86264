"""The implement activity is idempotent: a retry after a push reuses the pushed commit."""

from __future__ import annotations

import subprocess

from temporalio.testing import ActivityEnvironment

from tamma.activities import IssueActivities
from tamma.models import ImplementInput, Issue, Plan, PlanStep, TestInput
from tamma.platforms.local import LocalPlatform
from tamma.providers.scripted import DEMO_TRANSCRIPT


async def test_implement_twice_pushes_once(activities: IssueActivities, demo: tuple[LocalPlatform, Issue]) -> None:
    platform, issue = demo
    await platform.ensure_branch("tamma/issue-1", "main")
    plan = Plan(summary="fix", steps=[PlanStep(title="fix")], files=["pager.py"], estimate_hours=0.1)
    inp = ImplementInput(
        repo=platform.repo, issue=issue, plan=plan, branch="tamma/issue-1", iteration=1, transcript=str(DEMO_TRANSCRIPT)
    )
    env = ActivityEnvironment()
    first = await env.run(activities.implement, inp)
    second = await env.run(activities.implement, inp)  # as if the first worker died after pushing
    assert not first.reused and second.reused
    assert first.commit == second.commit
    log = subprocess.run(
        ["git", "-C", str(platform.path), "log", "--format=%s", "main..tamma/issue-1"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert log == ["Fix off-by-one in paginate() (#1)"]
    report = await env.run(
        activities.run_tests, TestInput(repo=platform.repo, branch="tamma/issue-1", commit=first.commit)
    )
    assert report.passed and "Ran 2 tests" in report.output_tail
