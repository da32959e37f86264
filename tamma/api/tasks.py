"""/api/v1/tasks: the same task operations as the CLI, over HTTP, answered from Temporal.

Task ids contain ':', '/' and '#': percent-encode them in paths ('#' as %23)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from tamma.api.auth import Operator, Viewer, revoked_since, verified
from tamma.api.events import allowed_repo
from tamma.api.live import TOO_SLOW, LiveHub
from tamma.config import Settings
from tamma.errors import AuthError, InvalidInputError, PermissionDenied, TammaError, TemporalUnavailable
from tamma.models import MAX_ISSUE, IssueTaskInput, RepoRef, TaskState, TaskSummary
from tamma.platforms.local import local_repo_ref
from tamma.runtime.tasks import TaskService

router = APIRouter(prefix="/api/v1", tags=["tasks"])


class TaskCreate(BaseModel):
    repository: str = Field(
        description="local:/path/to/repo, github:owner/name or gitlab:group/project",
        examples=["github:example-org/example-repo"],
    )
    issue: int = Field(ge=1, le=MAX_ISSUE)
    yes: bool = Field(default=False, description="approve the plan without asking")
    rerun: bool = Field(default=False, description="start again even if the issue is done")


class TaskCreated(BaseModel):
    id: str
    created: bool


class TaskPage(BaseModel):
    tasks: list[TaskSummary]
    next_page_token: str | None = None


class Decision(BaseModel):
    reason: str = Field(default="", max_length=2000)


def _service(request: Request) -> TaskService:
    """The task service — or, while the health probe's last look found Temporal unreachable, a
    503 at once: the SDK would retry each call for ~10 s before saying what the probe knows."""
    probe = getattr(request.app.state, "probe", None)
    if probe is not None and probe.reachable is False:
        raise TemporalUnavailable(f"Temporal is unreachable ({probe.error}); the task API answers when it is back")
    svc: TaskService = request.app.state.tasks
    return svc


def parse_repository(value: str, settings: Settings) -> RepoRef:
    platform, _, locator = value.partition(":")
    if platform == "local" and locator:
        check_local_allowed(settings, locator)
        return local_repo_ref(locator)
    if platform in ("github", "gitlab") and locator.count("/") >= 1 and " " not in locator:
        return RepoRef(platform=platform, locator=locator.strip("/"))
    raise InvalidInputError(
        f"repository {value!r} must look like local:/path, github:owner/name or gitlab:group/project"
    )


def check_local_allowed(settings: Settings, locator: str) -> None:
    """A local repository is reachable over HTTP only when the operator said so: named as
    'local:/path' in webhooks.repositories or under one of api.local_roots. Checked before the
    path is touched, so a caller learns nothing about the server's disk from the answer."""
    path = Path(locator).expanduser()
    if not path.is_absolute():
        raise InvalidInputError(f"local repository {locator!r} must be an absolute path")
    real = path.resolve()
    named = {
        Path(r.partition(":")[2]).expanduser().resolve()
        for r in settings.webhooks.repositories
        if r.startswith("local:")
    }
    roots = [root.expanduser().resolve() for root in settings.api.local_roots]
    if real in named or any(real.is_relative_to(root) for root in roots):
        return
    raise PermissionDenied(
        f"local repository {locator!r} is not allowed through the API: name it as 'local:{locator}' in "
        "webhooks.repositories or put it under api.local_roots"
    )


@router.post("/tasks", status_code=201, response_model=TaskCreated, summary="Start (or attach to) an issue's task")
async def create_task(body: TaskCreate, request: Request, who: Operator) -> TaskCreated:
    settings = request.app.state.settings
    repo = parse_repository(body.repository, settings)
    if repo.platform != "local" and not allowed_repo(settings.webhooks, repo.platform, repo.locator):
        raise InvalidInputError(f"repository {repo.key} is not in webhooks.repositories")
    inp = IssueTaskInput(repo=repo, issue_number=body.issue, options=settings.task_options(yes=body.yes))
    wid, created = await _service(request).start(inp, rerun=body.rerun)
    return TaskCreated(id=wid, created=created)


@router.get("/tasks", response_model=TaskPage, summary="List tasks (Temporal visibility)")
async def list_tasks(
    request: Request,
    who: Viewer,
    status: Annotated[str | None, Query(max_length=40)] = None,
    repository: Annotated[str | None, Query(max_length=300)] = None,
    page_size: Annotated[int, Query(ge=1, le=100)] = 20,
    page_token: Annotated[str | None, Query(max_length=4000)] = None,
) -> TaskPage:
    token = None
    if page_token:
        try:
            token = base64.b64decode(page_token.encode(), altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInputError("page_token is not a token this API returned") from None
    rows, nxt = await _service(request).page(status, repository, page_size, token)
    return TaskPage(tasks=rows, next_page_token=base64.urlsafe_b64encode(nxt).decode() if nxt else None)


@router.get("/tasks/{task_id:path}/logs", summary="Server-sent events of step changes until the task ends")
async def task_logs(task_id: str, request: Request, who: Viewer) -> StreamingResponse:
    svc = _service(request)
    await svc.state(task_id)  # 404 before streaming starts
    hub: LiveHub = request.app.state.live

    async def events() -> AsyncIterator[str]:
        async with hub.subscribe(task_id) as queue:
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), HEARTBEAT_S)
                except TimeoutError:
                    if await request.is_disconnected() or await revoked_since(request.app.state, who):
                        return
                    yield ": ping\n\n"  # an SSE comment: keeps proxies from closing an idle stream
                    continue
                if event is None or event["event"] == "dropped":
                    return
                if event["event"] == "step":
                    yield f"event: step\ndata: {json.dumps(event['step'])}\n\n"
                elif event["event"] == "end":
                    yield f"event: end\ndata: {json.dumps({'status': event['status'], 'error': event['error']})}\n\n"

    return StreamingResponse(events(), media_type="text/event-stream", headers={"cache-control": "no-cache"})


#: a WebSocket or SSE stream with nothing to say sends a ping this often
HEARTBEAT_S = 15.0


@router.websocket("/tasks/{task_id:path}/events")
async def task_events(websocket: WebSocket, task_id: str) -> None:
    """A task's events as JSON messages — `step` (each change of a step), `end` (status, error),
    `ping` (every HEARTBEAT_S while nothing happens) — until it ends. Auth: `Authorization: Bearer
    <JWT>` (viewer or above), or `?access_token=` for browsers, which cannot set the header. Close
    codes: 1008 not allowed or no such task, 1013 Temporal unreachable or the reader fell behind
    (reconnect), 1000 after the end event."""
    scheme, _, token = websocket.headers.get("authorization", "").partition(" ")
    token = token.strip() if scheme.lower() == "bearer" else websocket.query_params.get("access_token", "")
    try:
        who = await verified(websocket.app.state, token)  # any valid role may watch: viewer is the lowest
    except AuthError as exc:
        await websocket.close(code=1008, reason=exc.message[:120])
        return
    except TammaError as exc:  # the identity provider's keys could not be fetched
        await websocket.close(code=1013, reason=exc.message[:120])
        return
    probe = getattr(websocket.app.state, "probe", None)
    if probe is not None and probe.reachable is False:
        await websocket.close(code=1013, reason="Temporal is unreachable")
        return
    service: TaskService = websocket.app.state.tasks
    if not await service.exists(task_id):
        await websocket.close(code=1008, reason=f"no task {task_id}"[:120])
        return
    await websocket.accept()
    hub: LiveHub = websocket.app.state.live
    with contextlib.suppress(WebSocketDisconnect):
        async with hub.subscribe(task_id) as queue:
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), HEARTBEAT_S)
                except TimeoutError:
                    revoked = await revoked_since(websocket.app.state, who)
                    if revoked:
                        await websocket.close(code=1008, reason=revoked[:120])
                        return
                    await websocket.send_json({"event": "ping"})
                    continue
                if event is None:
                    await websocket.close(code=1000)
                    return
                await websocket.send_json(event)
                if event is TOO_SLOW:
                    await websocket.close(code=1013, reason="too far behind: reconnect")
                    return


@router.post("/tasks/{task_id:path}/approve", response_model=TaskState, summary="Approve the plan (workflow update)")
async def approve_task(task_id: str, request: Request, who: Operator, body: Decision | None = None) -> TaskState:
    return await _service(request).approve(task_id, by=f"api:{who.subject}", reason=body.reason if body else "")


@router.post("/tasks/{task_id:path}/reject", response_model=TaskState, summary="Reject the plan (workflow update)")
async def reject_task(task_id: str, body: Decision, request: Request, who: Operator) -> TaskState:
    return await _service(request).reject(task_id, by=f"api:{who.subject}", reason=body.reason)


@router.post("/tasks/{task_id:path}/resume", response_model=TaskState, summary="Resume a parked task (workflow update)")
async def resume_task(task_id: str, request: Request, who: Operator) -> TaskState:
    return await _service(request).resume(task_id, by=f"api:{who.subject}")


class Retried(BaseModel):
    id: str
    action: Literal["resumed", "started", "attached"] = Field(
        description="resumed: a parked task goes on; started: a finished task runs again as it was started"
    )


@router.post(
    "/tasks/{task_id:path}/retry",
    response_model=Retried,
    summary="Resume a parked task, or run a finished one that did not merge again (as `tamma retry`)",
)
async def retry_task(task_id: str, request: Request, who: Operator) -> Retried:
    settings = request.app.state.settings
    service = _service(request)
    plan = await service.plan_retry(task_id, settings.task_options())
    if plan.action == "resume":
        await service.resume(task_id, by=f"api:{who.subject}")
        return Retried(id=task_id, action="resumed")
    assert plan.input is not None
    repo = plan.input.repo  # checked again as at a start: the settings may have changed since
    if repo.platform == "local":
        check_local_allowed(settings, repo.locator)
    elif not allowed_repo(settings.webhooks, repo.platform, repo.locator):
        raise InvalidInputError(f"repository {repo.key} is not in webhooks.repositories")
    wid, created = await service.start(plan.input, rerun=True)
    return Retried(id=wid, action="started" if created else "attached")


@router.get("/tasks/{task_id:path}", response_model=TaskState, summary="A task's state (workflow query)")
async def get_task(task_id: str, request: Request, who: Viewer) -> TaskState:
    return await _service(request).state(task_id)


@router.delete("/tasks/{task_id:path}", status_code=202, summary="Cancel a running task")
async def cancel_task(task_id: str, request: Request, who: Operator) -> dict[str, str]:
    await _service(request).cancel(task_id)
    return {"id": task_id, "status": "cancel requested"}
