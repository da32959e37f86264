"""The issue workflow on the local platform, against the real dev server and real git."""

from __future__ import annotations

import subprocess

from temporalio.client import Client

from tamma.activities import IssueActivities
from tamma.config import Settings
from tamma.models import Issue, IssueTaskInput, TaskStatus
from tamma.platforms.local import LocalPlatform
from tamma.providers.scripted import DEMO_TRANSCRIPT
from tamma.runtime.tasks import TaskService
from tests.conftest import running_worker


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
        state = await service.handle(wid).result()
    assert created
    assert state.status == TaskStatus.MERGED, state.error
    assert "(page - 1)" in git(platform, "show", "main:pager.py")
    assert git(platform, "log", "-1", "--format=%s", "main").startswith("Merge !1")
    assert state.tests[-1].passed
    [pr] = platform.list_pull_requests()
    assert pr.state == "merged" and pr.merge_sha == git(platform, "rev-parse", "main")
