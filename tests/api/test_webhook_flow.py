"""A webhook-started task driven to a merge by webhook signals: assignment starts it, a
`/tamma approve` comment from an owner approves it (once, however often it is redelivered)."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client

from tamma.config import Settings
from tamma.demo import make_demo
from tamma.models import RepoRef, TaskStatus
from tamma.providers.scripted import DEMO_TRANSCRIPT
from tamma.runtime.tasks import TaskService
from tamma.runtime.wiring import build_activities
from tests.api.conftest import github_headers, load, running_api, with_sections
from tests.conftest import running_worker


async def post(http: httpx.AsyncClient, payload: dict[str, Any], event: str, delivery: str) -> httpx.Response:
    body = json.dumps(payload).encode()
    return await http.post("/webhooks/github", content=body, headers=github_headers(body, event, delivery))


async def wait_status(service: TaskService, wid: str, status: TaskStatus) -> None:
    for _ in range(200):
        if (await service.state(wid)).status == status:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"never {status}")


async def test_assign_then_approve_by_comment_merges(
    api_settings: Settings, client: Client, task_queue: str, tmp_path: Path
) -> None:
    settings = with_sections(api_settings, approval={"auto_approve": False}, llm={"transcript": str(DEMO_TRANSCRIPT)})
    platform, _ = make_demo(tmp_path / "repo", settings.data_dir)
    name = f"octo-{uuid.uuid4().hex[:8]}/hello"
    activities = build_activities(settings)
    # The forge's issue and git remote are stood in for by the local platform (GitHub's own
    # platform is a separate piece); everything else is the real webhook → workflow path.
    activities.platforms = lambda repo: platform  # type: ignore[assignment,return-value]
    service = TaskService(client, task_queue)
    assigned = load("github/issues/assigned.json")
    assigned["repository"] = dict(assigned["repository"], full_name=name)
    comment = load("github/issue_comment/created.json")
    comment["repository"] = assigned["repository"]
    comment["comment"] = dict(
        comment["comment"], body="Looks good.\n/tamma approve ship it", author_association="OWNER"
    )
    with running_api(settings, tmp_path / "t.toml") as url:
        async with (
            httpx.AsyncClient(base_url=url, timeout=30) as http,
            running_worker(client, task_queue, activities, settings),
        ):
            started = await post(http, assigned, "issues", "d-assign")
            wid = started.json()["task"]
            assert wid == f"tamma:{RepoRef(platform='github', locator=name).key}#1"
            await wait_status(service, wid, TaskStatus.AWAITING_APPROVAL)
            first = await post(http, comment, "issue_comment", "d-approve")
            assert first.status_code == 200 and first.json()["outcome"] == "signalled"
            again = await post(http, comment, "issue_comment", "d-approve")
            assert again.json().get("duplicate") is True
            state = await service.handle(wid).result()
    assert state.status == TaskStatus.MERGED
    assert state.approval is not None and state.approval.by == "Codertocat" and state.approval.reason == "ship it"


async def test_closing_the_issue_stops_the_task(
    api_settings: Settings, client: Client, task_queue: str, tmp_path: Path
) -> None:
    settings = with_sections(api_settings, approval={"auto_approve": False}, llm={"transcript": str(DEMO_TRANSCRIPT)})
    platform, _ = make_demo(tmp_path / "repo", settings.data_dir)
    name = f"octo-{uuid.uuid4().hex[:8]}/hello"
    activities = build_activities(settings)
    activities.platforms = lambda repo: platform  # type: ignore[assignment,return-value]
    service = TaskService(client, task_queue)
    assigned = load("github/issues/assigned.json")
    assigned["repository"] = dict(assigned["repository"], full_name=name)
    closed = {**assigned, "action": "closed"}
    with running_api(settings, tmp_path / "t.toml") as url:
        async with (
            httpx.AsyncClient(base_url=url, timeout=30) as http,
            running_worker(client, task_queue, activities, settings),
        ):
            wid = (await post(http, assigned, "issues", "a1")).json()["task"]
            await wait_status(service, wid, TaskStatus.AWAITING_APPROVAL)
            assert (await post(http, closed, "issues", "c1")).json()["outcome"] == "signalled"
            state = await service.handle(wid).result()
    assert state.status == TaskStatus.CANCELLED and "closed" in state.error
