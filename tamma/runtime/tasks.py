"""Task operations shared by the CLI and the API: start, state, approve, reject, cancel, list.

Temporal is the task record: a task is the issue's workflow, listed from visibility through
Tamma's search attributes, described by the workflow's `state` query or result.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel
from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import (
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from tamma.errors import DecisionQueued, InvalidInputError, NotFoundError, NotReady, TemporalUnavailable
from tamma.models import ApprovalRequest, IssueTaskInput, RepoRef, TaskOptions, TaskState, TaskStatus, TaskSummary
from tamma.runtime.presence import Presence, presence
from tamma.workflows import search
from tamma.workflows.issue import TASK_ENDED, IssueWorkflow

_DONE = {TaskStatus.MERGED.value, TaskStatus.PR_OPEN.value}


#: what an update answers when no worker takes it in time
_NO_TAKER = (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.RESOURCE_EXHAUSTED, RPCStatusCode.CANCELLED)


class RetryPlan(BaseModel):
    """What `retry` does to a task, decided in one place for every launcher (CLI, API, a
    `/tamma retry` comment): resume it where it is parked, or run it again as it was started."""

    workflow_id: str
    action: Literal["resume", "rerun"]
    #: for a rerun: the input it starts with (the last run's options, with the overrides asked)
    input: IssueTaskInput | None = None


class TaskService:
    def __init__(self, client: Client, task_queue: str) -> None:
        self.client = client
        self.task_queue = task_queue

    async def start(self, inp: IssueTaskInput, rerun: bool = False, title: str = "") -> tuple[str, bool]:
        """Start the issue's workflow, or attach to the one already running. Returns (id, new).

        A finished one that merged (or left a PR) is reused unless `rerun`; a failed, rejected,
        escalated or cancelled one is started afresh under the same id.
        """
        wid = search.workflow_id(inp.repo.key, inp.issue_number)
        existing = await self._describe(wid)
        if existing is not None:
            status, sa_status = existing
            if status == WorkflowExecutionStatus.RUNNING or (sa_status in _DONE and not rerun):
                return wid, False
        await self.client.start_workflow(
            IssueWorkflow.run,
            inp,
            id=wid,
            task_queue=self.task_queue,
            # USE_EXISTING: two racing starts (a webhook redelivery, two shells) share one run.
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            search_attributes=_attributes(inp),
            static_summary=search.summary(inp.repo.key, inp.issue_number, title),
        )
        return wid, True

    async def ensure_started(
        self, inp: IssueTaskInput, rerun: bool = False, rpc_timeout_s: float = 5.0, title: str = ""
    ) -> bool:
        """One RPC, for webhooks: start the issue's workflow unless one exists; True only when a
        run was started (False: a run was already there, running or, without `rerun`, finished).

        Without `rerun` a finished workflow is not started again (a redelivered or repeated
        trigger must not redo merged work); with it (`/tamma retry`) a finished one is.
        """
        wid = search.workflow_id(inp.repo.key, inp.issue_number)
        try:
            await self.client.start_workflow(
                IssueWorkflow.run,
                inp,
                id=wid,
                task_queue=self.task_queue,
                # FAIL, not USE_EXISTING: the error is how we learn that this call started nothing.
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE
                if rerun
                else WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=_attributes(inp),
                static_summary=search.summary(inp.repo.key, inp.issue_number, title),
                rpc_timeout=timedelta(seconds=rpc_timeout_s),
            )
        except WorkflowAlreadyStartedError:
            return False
        return True

    async def _describe(self, wid: str) -> tuple[WorkflowExecutionStatus | None, str | None] | None:
        try:
            desc = await self.client.get_workflow_handle(wid).describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return None
            raise TemporalUnavailable(f"cannot describe task {wid}: {exc.message}") from None
        return desc.status, desc.typed_search_attributes.get(search.STATUS)

    async def exists(self, wid: str) -> bool:
        """Whether a task with this id was ever started (running or finished)."""
        return await self._describe(wid) is not None

    def handle(self, wid: str) -> WorkflowHandle[IssueWorkflow, TaskState]:
        return self.client.get_workflow_handle_for(IssueWorkflow.run, wid)

    async def result(self, wid: str) -> TaskState:
        """Wait for the task to end and return its final state, however it ended: a task that did
        not merge or open a PR ends as a failed execution carrying its state (the Web UI shows it
        as failed); one cancelled through Temporal raises WorkflowFailureError as before."""
        try:
            return await self.handle(wid).result()
        except WorkflowFailureError as exc:
            state = final_state(exc)
            if state is None:
                raise
            return state

    async def state(self, wid: str, query_timeout_s: float = 5.0) -> TaskState:
        existing = await self._describe(wid)
        if existing is None:
            raise NotFoundError(f"no task {wid}; list tasks with `tamma list`")
        handle = self.handle(wid)
        if existing[0] in (WorkflowExecutionStatus.COMPLETED, WorkflowExecutionStatus.FAILED):
            try:
                return await self.result(wid)
            except WorkflowFailureError as exc:  # failed for another reason: what visibility knows
                return await self._visible_state(wid, str(exc.cause or exc)[:200])
        # Running, cancelled or terminated: the workflow answers queries about its state, but
        # only through a worker; without one, answer what visibility knows instead of hanging.
        if existing[0] == WorkflowExecutionStatus.RUNNING:
            seen = await self.presence()
            if not seen.unknown and seen.missing:  # no query would be answered: say why, now
                return await self._visible_state(wid, "", note=seen.waiting())
        try:
            return await handle.query(IssueWorkflow.state_query, rpc_timeout=timedelta(seconds=query_timeout_s))
        except (RPCError, WorkflowQueryFailedError) as exc:
            return await self._visible_state(wid, str(exc)[:200])

    async def _visible_state(self, wid: str, why: str, note: str = "") -> TaskState:
        desc = await self.client.get_workflow_handle(wid).describe()
        sa = desc.typed_search_attributes
        platform, _, rest = (sa.get(search.REPOSITORY) or "local:?").partition(":")
        status = sa.get(search.STATUS) or TaskStatus.RUNNING.value
        if desc.status in (WorkflowExecutionStatus.CANCELED, WorkflowExecutionStatus.TERMINATED):
            status = TaskStatus.CANCELLED.value
        return TaskState(
            workflow_id=wid,
            repo=RepoRef(
                platform=platform if platform in ("local", "github", "gitlab") else "local",
                locator=rest,
            ),
            issue_number=sa.get(search.ISSUE) or 0,
            status=TaskStatus(status) if status in TaskStatus._value2member_map_ else TaskStatus.RUNNING,
            note=note
            or f"partial view from visibility: no worker answered the state query ({why}); is a worker running?",
        )

    async def presence(self) -> Presence:
        """Who will run this service's tasks (runtime.presence): the one answer for every launcher."""
        return await presence(self.client, self.task_queue)

    async def serving(self) -> bool:
        """True when a live worker serves both of the task's queues."""
        return (await self.presence()).serving

    async def started_with(self, wid: str) -> IssueTaskInput | None:
        """The input the task's last run was started with (its options: transcript, approval
        policy, budget...), from the first event of its history; None when there is none."""
        try:
            async for event in self.handle(wid).fetch_history_events():
                started = event.workflow_execution_started_event_attributes
                if not started.input.payloads:
                    return None
                decoded = await self.client.data_converter.decode(started.input.payloads, [IssueTaskInput])
                first = decoded[0] if decoded else None
                return first if isinstance(first, IssueTaskInput) else None
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return None
            raise
        return None

    async def plan_retry(
        self, wid: str, default_options: TaskOptions, *, yes: bool = False, transcript: str | None = None
    ) -> RetryPlan:
        """The one rule for retry: a parked task resumes; a task still working, or one already
        merged, is refused with what to do instead; any other finished task runs again with the
        options its last run was started with (its recording, approval policy, budget), `yes`
        and `transcript` overriding them. `default_options` serve a run whose input is unreadable."""
        existing = await self._describe(wid)
        if existing is None:
            raise NotFoundError(f"no task {wid} to retry; start one with `tamma start` (or a `/tamma start` comment)")
        execution, status = existing
        if execution == WorkflowExecutionStatus.RUNNING:
            if status == TaskStatus.PARKED.value:
                return RetryPlan(workflow_id=wid, action="resume")
            raise InvalidInputError(
                f"task {wid} is {status or 'running'}, not parked or finished; nothing to retry "
                f"(`tamma status {wid}` shows where it is)"
            )
        if status == TaskStatus.MERGED.value:
            raise InvalidInputError(
                f"task {wid} already merged; nothing to retry (`tamma start --issue N --rerun` does it again)"
            )
        before = await self.started_with(wid)
        if before is None:
            seen = await self._visible_state(wid, "")
            before = IssueTaskInput(repo=seen.repo, issue_number=seen.issue_number, options=default_options)
        options = before.options
        if yes:
            options = options.model_copy(update={"yes": True})
        if transcript is not None:
            options = options.model_copy(update={"transcript": transcript})
        return RetryPlan(workflow_id=wid, action="rerun", input=before.model_copy(update={"options": options}))

    async def retry_note(self, wid: str) -> str:
        """'retrying in 2s (429 rate limited, attempt 2/3)' while a step waits to be retried,
        else ''. From Temporal's own record of the pending activity, so a person sees the retry
        in the step line instead of a traceback."""
        try:
            desc = await self.handle(wid).describe(rpc_timeout=timedelta(seconds=5))
        except RPCError:
            return ""
        for pending in desc.raw_description.pending_activities:
            if pending.attempt <= 1 and not pending.HasField("last_failure"):
                continue
            reason = pending.last_failure.message.splitlines()[0][:100] if pending.HasField("last_failure") else ""
            wait = ""
            if pending.HasField("next_attempt_schedule_time"):
                left = (pending.next_attempt_schedule_time.ToDatetime(UTC) - datetime.now(UTC)).total_seconds()
                wait = f" in {max(0, round(left))}s" if left > 0 else ""
            most = pending.maximum_attempts or "unlimited"
            return f"retrying{wait} ({reason}; attempt {pending.attempt}/{most})"
        return ""

    async def approve(self, wid: str, by: str, reason: str = "") -> TaskState:
        return await self._decide(wid, IssueWorkflow.approve, ApprovalRequest(by=by, reason=reason), "approve_signal")

    async def reject(self, wid: str, by: str, reason: str) -> TaskState:
        if not reason.strip():
            raise InvalidInputError("a rejection needs a reason; pass --reason")
        return await self._decide(wid, IssueWorkflow.reject, ApprovalRequest(by=by, reason=reason), "reject_signal")

    #: how long a decision waits for a worker to take it before it is queued as a signal instead
    decide_timeout_s = 5.0

    async def check_decision(
        self, wid: str, kind: Literal["approve", "reject", "resume"], *, waiting: bool = True
    ) -> None:
        """The checks every launcher's decision gets — CLI and API (updates), `/tamma approve`
        comments and the Web UI (signals) — with the same words as the workflow's validators:
        the task exists, runs, and (with `waiting`) waits for this decision. An update skips the
        last: the workflow's validator answers it, and knows more ("already approved by …")."""
        existing = await self._describe(wid)
        if existing is None:
            raise NotFoundError(f"no task {wid}; list tasks with `tamma list`")
        execution, status = existing
        if execution != WorkflowExecutionStatus.RUNNING:
            raise InvalidInputError(f"task {wid} is not running; nothing to decide")
        if not waiting:
            return
        if kind == "resume" and status not in (None, TaskStatus.PARKED.value):
            raise InvalidInputError(f"this task is not parked (status: {status}); nothing to resume")
        if kind != "resume" and status not in (None, TaskStatus.AWAITING_APPROVAL.value):
            raise InvalidInputError(f"this task is not waiting for approval (status: {status})")

    async def _decide(self, wid: str, update: object, req: ApprovalRequest, signal: str) -> TaskState:
        kind = signal.removesuffix("_signal")
        await self.check_decision(wid, kind, waiting=False)  # type: ignore[arg-type]
        seen = await self.presence()
        if not seen.unknown and seen.missing:
            raise NotReady(f"task {wid} cannot take a decision now: {seen.waiting()}, and retry")
        try:
            result: TaskState = await asyncio.wait_for(
                self.handle(wid).execute_update(  # type: ignore[call-overload]
                    update, req, rpc_timeout=timedelta(seconds=self.decide_timeout_s)
                ),
                self.decide_timeout_s + 1,
            )
        except (TimeoutError, RPCError, WorkflowUpdateRPCTimeoutOrCancelledError) as exc:
            if isinstance(exc, RPCError) and exc.status not in _NO_TAKER:
                if exc.status == RPCStatusCode.NOT_FOUND or "completed" in exc.message.lower():
                    raise InvalidInputError(f"task {wid} is not running; nothing to decide") from None
                raise
            # Temporal lists a killed worker as polling for minutes, so "serving" can be wrong:
            # no worker took the update. The decision goes in as a signal, kept in history and
            # taken when a worker returns (one delivery id, so it counts once whichever lands).
            queued = req.model_copy(update={"delivery": req.delivery or f"{signal}:{uuid.uuid4()}"})
            await self.handle(wid).signal(signal, queued, rpc_timeout=timedelta(seconds=5))
            raise DecisionQueued(
                f"no worker took the decision on {wid} within {self.decide_timeout_s:g}s (none may be alive); "
                "it is queued and takes effect when a worker returns (`tamma worker`)"
            ) from None
        except WorkflowUpdateFailedError as exc:
            cause = exc.cause
            raise InvalidInputError(f"task {wid} refused: {getattr(cause, 'message', None) or cause}") from None
        return result

    async def resume(self, wid: str, by: str) -> TaskState:
        """Resume a parked task (a model rate limit outlasted its horizon): the step runs again."""
        return await self._decide(wid, IssueWorkflow.resume, ApprovalRequest(by=by, reason="resumed"), "resume_signal")

    async def cancel(self, wid: str) -> None:
        existing = await self._describe(wid)
        if existing is None:
            raise NotFoundError(f"no task {wid}; list tasks with `tamma list`")
        if existing[0] != WorkflowExecutionStatus.RUNNING:
            raise InvalidInputError(f"task {wid} has already finished")
        await self.handle(wid).cancel()

    async def page(
        self, status: str | None, repository: str | None, page_size: int, token: bytes | None
    ) -> tuple[list[TaskSummary], bytes | None]:
        """One page of tasks, newest first, and the token for the next page (None at the end)."""
        it = self.client.list_workflows(_query(status, repository), page_size=page_size, next_page_token=token)
        try:
            await it.fetch_next_page()
        except RPCError as exc:
            if token is not None and exc.status != RPCStatusCode.UNAVAILABLE:
                raise InvalidInputError("page_token is not a token this API returned (or it expired)") from None
            if exc.status == RPCStatusCode.INVALID_ARGUMENT:
                raise InvalidInputError(f"cannot list tasks: {exc.message}") from None
            raise TemporalUnavailable(f"cannot list tasks: {exc.message}") from None
        rows = [_summary(wf) for wf in it.current_page or []]
        return rows, it.next_page_token or None

    async def list(
        self, status: str | None = None, repository: str | None = None, limit: int = 50
    ) -> list[TaskSummary]:
        rows: list[TaskSummary] = []
        async for wf in self.client.list_workflows(_query(status, repository), limit=limit):
            rows.append(_summary(wf))
        return rows


def _query(status: str | None, repository: str | None) -> str:
    clauses = ["WorkflowType = 'IssueWorkflow'"]
    if status:
        clauses.append(f"{search.STATUS.name} = {_quote(status)}")
    if repository:
        clauses.append(f"{search.REPOSITORY.name} = {_quote(repository)}")
    return " AND ".join(clauses)


def _summary(wf: WorkflowExecution) -> TaskSummary:
    sa = wf.typed_search_attributes
    fallback = wf.status.name.lower() if wf.status else ""
    return TaskSummary(
        workflow_id=wf.id,
        repository=sa.get(search.REPOSITORY) or "",
        issue_number=sa.get(search.ISSUE) or 0,
        status=sa.get(search.STATUS) or fallback,
        step=sa.get(search.STEP) or "",
        started_at=wf.start_time,
    )


def final_state(exc: WorkflowFailureError) -> TaskState | None:
    """The task state an unsuccessful task's failed execution carries in its failure details."""
    cause = exc.cause
    if isinstance(cause, ApplicationError) and cause.type == TASK_ENDED and cause.details:
        return TaskState.model_validate(cause.details[0])
    return None


def _attributes(inp: IssueTaskInput) -> TypedSearchAttributes:
    return search.new_task(inp.repo.key, inp.issue_number)


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
