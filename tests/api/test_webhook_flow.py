"""A webhook-started task driven to a merge by webhook signals, on the GitHub stand-in:
assignment starts it, a `/tamma approve` comment from an owner approves it (once, however often
it is redelivered), closing the issue stops it."""

from __future__ import annotations

import asyncio
import json
import uuid
from urllib.parse import quote
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from tamma.config import Settings
from tamma.demo import DEMO_BODY, DEMO_TITLE, make_sample_repo
from tamma.errors import InvalidInputError
from tamma.models import RepoRef, TaskStatus
from tamma.runtime.tasks import TaskService
from tamma.runtime.wiring import build_activities
from tests.api.conftest import github_headers, load, running_api, with_sections
from tests.conftest import eventually, keep_history, running_worker
from tests.standins.git_remote import BareRemote, git
from tests.standins.github_api import FakeGitHub
from tests.standins.http import serve
from tests.transcripts import demo_exchanges, replanned, transcript_doc

EDIT = "Edited: page 0 must raise ValueError too."


async def post(http: httpx.AsyncClient, payload: dict[str, Any], event: str, delivery: str) -> httpx.Response:
    body = json.dumps(payload).encode()
    return await http.post("/webhooks/github", content=body, headers=github_headers(body, event, delivery))


async def wait_status(service: TaskService, wid: str, status: TaskStatus) -> None:
    for _ in range(200):
        if (await service.state(wid)).status == status:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"never {status}")


@dataclass
class Flow:
    http: httpx.AsyncClient
    service: TaskService
    github: FakeGitHub
    assigned: dict[str, Any]


@pytest.fixture
async def flow(api_settings: Settings, client: Client, task_queue: str, tmp_path: Path) -> AsyncIterator[Flow]:
    """The server, a worker, and a GitHub stand-in holding the demo issue: webhooks in, forge out."""
    remote = BareRemote.from_worktree(make_sample_repo(tmp_path / "src"), tmp_path / "remote.git")
    transcript = tmp_path / "flow.json"
    transcript.write_text(transcript_doc(demo_exchanges() + replanned([EDIT])))
    fake = FakeGitHub(f"octo-{uuid.uuid4().hex[:8]}", "hello", remote, "ghp_flow")
    fake.add_issue(1, DEMO_TITLE, DEMO_BODY)
    assigned = load("github/issues/assigned.json")
    assigned["repository"] = dict(assigned["repository"], full_name=fake.full)
    with serve(fake) as gh:
        fake.base = gh.url
        settings = with_sections(
            api_settings,
            approval={"auto_approve": False},
            llm={"transcript": str(transcript)},
            github={"token": "ghp_flow", "base_url": gh.url, "git_url": str(remote.path)},
        )
        with running_api(settings, tmp_path / "t.toml") as url:
            async with (
                httpx.AsyncClient(base_url=url, timeout=30) as http,
                running_worker(client, task_queue, build_activities(settings), settings),
            ):
                yield Flow(http, TaskService(client, task_queue), fake, assigned)


async def test_assign_then_approve_by_comment_merges(flow: Flow) -> None:
    comment = load("github/issue_comment/created.json")
    comment["repository"] = flow.assigned["repository"]
    comment["comment"] = dict(
        comment["comment"], body="Looks good.\n/tamma approve ship it", author_association="OWNER"
    )
    started = await post(flow.http, flow.assigned, "issues", "d-assign")
    wid = started.json()["task"]
    assert wid == f"tamma:{RepoRef(platform='github', locator=flow.github.full).key}#1"
    await wait_status(flow.service, wid, TaskStatus.AWAITING_APPROVAL)
    first = await post(flow.http, comment, "issue_comment", "d-approve")
    assert first.status_code == 200 and first.json()["outcome"] == "signalled"
    again = await post(flow.http, comment, "issue_comment", "d-approve")
    assert again.json().get("duplicate") is True
    state = await flow.service.result(wid)
    assert state.status == TaskStatus.MERGED
    assert state.approval is not None and state.approval.by == "Codertocat" and state.approval.reason == "ship it"
    assert "(page - 1)" in git(flow.github.remote.path, "show", "main:pager.py")
    await keep_history(flow.service.client, wid, "approved-by-comment")


async def test_closing_the_issue_stops_the_task(flow: Flow) -> None:
    closed = {**flow.assigned, "action": "closed"}
    wid = (await post(flow.http, flow.assigned, "issues", "a1")).json()["task"]
    await wait_status(flow.service, wid, TaskStatus.AWAITING_APPROVAL)
    assert (await post(flow.http, closed, "issues", "c1")).json()["outcome"] == "signalled"
    state = await flow.service.result(wid)
    assert state.status == TaskStatus.CANCELLED and "closed" in state.error
    assert flow.github.remote.branches() == ["main"]  # stopped before any branch was made
    # assigned again: nothing runs, and the answer says so (it said "attached")
    again = (await post(flow.http, flow.assigned, "issues", "a2")).json()
    assert again["outcome"] == "finished" and "cancelled" in again["reason"] and "/tamma retry" in again["reason"]
    await keep_history(flow.service.client, wid, "stopped-on-issue-close")


async def test_an_edit_while_the_plan_waits_plans_again_from_the_new_text(flow: Flow) -> None:
    wid = (await post(flow.http, flow.assigned, "issues", "e-assign")).json()["task"]
    await wait_status(flow.service, wid, TaskStatus.AWAITING_APPROVAL)
    flow.github.issues[1]["body"] += "\n\n" + EDIT
    edited = load("github/issues/edited.json")
    edited["repository"] = flow.assigned["repository"]
    edited["issue"] = dict(edited["issue"], number=1)
    edited["changes"] = {"body": {"from": "the old text"}}
    answer = await post(flow.http, edited, "issues", "e-edit")
    assert answer.json()["outcome"] == "signalled" and answer.json()["reason"] == "body edited"
    assert (await post(flow.http, edited, "issues", "e-edit")).json().get("duplicate") is True
    # the replay only answers round 2 if the edited text is in the analysis and plan prompts
    state = await wait_for_second_plan(flow.service, wid)
    assert [s.status for s in state.steps if s.name == "approval"] == ["skipped", "running"]
    approved = await flow.service.approve(wid, by="alice")
    assert approved.plan is not None
    final = await flow.service.result(wid)
    assert final.status == TaskStatus.MERGED, final.error
    assert [s.name for s in final.steps].count("plan") == 2
    await keep_history(flow.service.client, wid, "replanned-after-edit")
    title_only = {**edited, "changes": {}}  # a label or milestone edit asks for nothing
    assert "neither title nor body" in (await post(flow.http, title_only, "issues", "e-none")).json()["reason"]


async def wait_for_second_plan(service: TaskService, wid: str) -> Any:
    for _ in range(200):
        state = await service.state(wid)
        if state.status == TaskStatus.AWAITING_APPROVAL and [s.name for s in state.steps].count("plan") == 2:
            return state
        await asyncio.sleep(0.1)
    raise AssertionError(f"never planned again: {state.status} {state.error}")


async def test_the_server_registers_the_search_attributes_on_a_fresh_temporal(
    api_settings: Settings, tmp_path: Path
) -> None:
    """A Temporal server no CLI or worker has touched lacks Tamma's search attributes, and every
    start would fail on them (webhooks answered 503 while /ready said 200). The server registers
    them itself at start."""
    from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
    from temporalio.testing import WorkflowEnvironment

    from tamma.runtime.embedded import temporal_binary
    from tamma.workflows import search

    fresh = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()), dev_server_log_level="error", ui=False
    )
    try:
        address = fresh.client.service_client.config.target_host
        settings = api_settings.model_copy(
            update={"temporal": api_settings.temporal.model_copy(update={"address": address})}
        )

        async def names() -> set[str]:
            got = await fresh.client.operator_service.list_search_attributes(
                ListSearchAttributesRequest(namespace="default")
            )
            return set(got.custom_attributes)

        assert not {k.name for k in search.ALL} & await names()
        with running_api(settings):
            registered = await eventually(names, lambda have: {k.name for k in search.ALL} <= have, timeout_s=20)
        assert {k.name for k in search.ALL} <= registered
    finally:
        await fresh.shutdown()


async def test_retry_is_one_rule_whatever_the_launcher(flow: Flow, api_settings: Settings) -> None:
    """`/tamma retry`, the API's retry and `tamma retry` (TaskService.plan_retry, which the CLI
    calls) give the same answer: refused while the task works or once it merged — a comment
    used to rerun a merged task — and a rejected task runs again as it was started."""
    from tests.api.conftest import auth

    def comment(body: str) -> dict[str, Any]:
        c = load("github/issue_comment/created.json")
        c["repository"] = flow.assigned["repository"]
        c["comment"] = dict(c["comment"], body=body, author_association="OWNER")
        return c

    operator = auth(api_settings, "operator")
    wid = (await post(flow.http, flow.assigned, "issues", "r-assign")).json()["task"]
    await wait_status(flow.service, wid, TaskStatus.AWAITING_APPROVAL)

    async def refusals(delivery: str) -> tuple[str, str, str]:
        by_comment = (await post(flow.http, comment("/tamma retry"), "issue_comment", delivery)).json()
        by_api = await flow.http.post(f"/api/v1/tasks/{quote(wid, safe='')}/retry", headers=operator)
        assert by_comment["outcome"] == "refused" and by_api.status_code == 400
        with pytest.raises(InvalidInputError) as by_cli:
            await flow.service.plan_retry(wid, api_settings.task_options())
        return by_comment["reason"], by_api.json()["detail"], by_cli.value.message

    waiting = await refusals("r-1")
    assert len(set(waiting)) == 1 and "awaiting_approval, not parked or finished" in waiting[0]
    await post(flow.http, comment("/tamma reject not this way"), "issue_comment", "r-reject")
    assert (await flow.service.result(wid)).status == TaskStatus.REJECTED
    first = await flow.service.started_with(wid)
    rerun = (await post(flow.http, comment("/tamma retry"), "issue_comment", "r-2")).json()
    assert rerun["outcome"] == "started"
    await wait_status(flow.service, wid, TaskStatus.AWAITING_APPROVAL)
    assert await flow.service.started_with(wid) == first  # as it was started: same options
    await post(flow.http, comment("/tamma approve"), "issue_comment", "r-approve")
    assert (await flow.service.result(wid)).status == TaskStatus.MERGED
    merged = await refusals("r-3")
    assert len(set(merged)) == 1 and "already merged" in merged[0]
    # approve and cancel: one rule too — a comment used to answer "signalled" for a decision the
    # finished task then ignored
    late = (await post(flow.http, comment("/tamma approve"), "issue_comment", "r-late")).json()
    api_late = await flow.http.post(f"/api/v1/tasks/{quote(wid, safe='')}/approve", headers=operator)
    with pytest.raises(InvalidInputError) as cli_late:
        await flow.service.approve(wid, by="cli:someone")
    assert late["outcome"] == "refused" and api_late.status_code == 400
    assert late["reason"] == api_late.json()["detail"] == cli_late.value.message
    assert "is not running; nothing to decide" in late["reason"]
    gone = (await post(flow.http, comment("/tamma cancel"), "issue_comment", "r-cancel")).json()
    with pytest.raises(InvalidInputError) as cli_gone:
        await flow.service.cancel(wid)
    assert gone["outcome"] == "refused" and gone["reason"] == cli_gone.value.message
