"""The machinery every step of a task runs on: the task's state, a step (an activity with its
record, retries, heartbeats, waits on rate limits and on the forge, failures sorted into kinds),
budgets, status changes and what they tell. `IssueWorkflow` (issue.py) tells the task's story on
top of it; nothing here decides what the task does next."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from typing import Any, NoReturn, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel

    from tamma import activity_names as names
    from tamma.errors import FailureKind
    from tamma.models import (
        ApprovalDecision,
        Budget,
        CommentInput,
        IssueTaskInput,
        ReviewComment,
        StepName,
        StepRecord,
        TaskState,
        TaskStatus,
        Usage,
    )
    from tamma.workflows import search
    from tamma.workflows.report import current_details, progress_comment, record_finish, step_summary, task_event

M = TypeVar("M")


class StepFailed(Exception):
    """An activity failed for good; the message is the reason shown to the user."""


class BudgetStop(Exception):
    """A per-issue budget ran out; the message names it."""


class CIStop(Exception):
    """CI still fails after the bounded fix attempts; the message says which checks."""


class Stopped(Exception):
    """The issue was closed or unassigned on the forge: stop between steps."""


class StepRunner:
    """The state of one task and the running of its steps."""

    def __init__(self, inp: IssueTaskInput) -> None:
        self.inp = inp
        self.opts = inp.options
        self.state = TaskState(workflow_id=workflow.info().workflow_id, repo=inp.repo, issue_number=inp.issue_number)
        self._decision: ApprovalDecision | None = None
        self._nudged = False
        self._seen_reviews: set[int] = set()
        self._answering: list[ReviewComment] = []
        self._stopped = ""
        self._edited = False  # the issue's text changed while its plan awaited a decision
        # Webhook deliveries already applied; a redelivered event must change nothing.
        self._deliveries: list[str] = []
        self._branch_files: list[str] = []  # what the branch really changes, from the last implement
        self._branch_total = 0  # how many it changes: more than listed means the gate fails closed
        self._untested = ""  # why nothing tested the change (no test command, no tests): a person decides
        self._cleared: set[str] = set()  # blocked files a person has approved
        self._ci_sha = ""  # the head commit the last green CI was about
        self._rate_limited_s = 0.0  # waited out on model rate limits since the last resume
        self._forge_waited_s = 0.0  # the merge held by the forge (a review, a check), waited so far
        self._forge_waits = 0
        self._resume_by = ""  # who resumed a parked task
        self._waiting_since: datetime | None = None
        self._notes: list[Any] = []  # notification activities in flight
        self._implementations = 0  # implement steps run: all but the first are fix iterations
        self._review_rounds = 0  # rounds of reviewers' comments answered with a new commit

    def _fresh(self, delivery: str) -> bool:
        if not delivery:
            return True
        if delivery in self._deliveries:
            return False
        self._deliveries = [*self._deliveries[-255:], delivery]
        return True

    async def _step(
        self,
        step: StepName,
        activity_name: str,
        arg: BaseModel,
        result_type: type[M],
        *,
        heavy: bool = False,
        detail: Any = None,
    ) -> M:
        record = self._begin(step)
        result: M = await self._activity(activity_name, arg, result_type, heavy=heavy, record=record)
        self._end(record, "done", detail(result) if detail else "")
        return result

    async def _activity(
        self, name: str, arg: BaseModel, result_type: Any, *, heavy: bool = False, record: StepRecord | None = None
    ) -> Any:
        o = self.opts
        retry = RetryPolicy(
            initial_interval=timedelta(seconds=o.retry_initial_s),
            backoff_coefficient=2.0,
            maximum_interval=timedelta(seconds=max(o.retry_initial_s * 8, 1)),
            maximum_attempts=o.retry_attempts,
        )
        extra: dict[str, Any] = {}
        if heavy:
            extra = {
                "task_queue": names.heavy_queue(workflow.info().task_queue),
                "heartbeat_timeout": timedelta(seconds=o.heartbeat_timeout_s),
                "start_to_close_timeout": timedelta(seconds=o.step_timeout_s),
            }
        else:
            # Every activity heartbeats (tamma.activities.heartbeat): a dead worker's step is retried
            # after the heartbeat timeout (seconds), not after its start-to-close timeout (minutes).
            extra = {
                "start_to_close_timeout": timedelta(seconds=min(o.step_timeout_s, 300)),
                "heartbeat_timeout": timedelta(seconds=o.heartbeat_timeout_s),
            }
        while True:
            try:
                return await workflow.execute_activity(
                    name, arg, result_type=result_type, retry_policy=retry, summary=step_summary(name, arg), **extra
                )
            except ActivityError as exc:
                if not await self._waited_out_rate_limit(exc, record) and not await self._waited_for_forge(exc, record):
                    self._failed(exc, name, record)

    async def _waited_out_rate_limit(self, exc: ActivityError, record: StepRecord | None) -> bool:
        """A model rate limit that outlasted the step's own wait (providers.ratelimit): count
        what the attempt was billed, then wait on a durable timer — no worker slot held — and
        call again; after workflow.rate_limit_horizon_s of that, park the task until a person
        resumes it (`tamma retry N`). True to call the activity again."""
        cause = exc.cause
        if not (isinstance(cause, ApplicationError) and cause.type == FailureKind.RATE_LIMITED):
            return False
        workflow.deprecate_patch("park-on-rate-limit")
        self._account_failed_attempt(cause, record)
        wait_s = next(
            (
                float(d["rate_limited"].get("wait_s", 0))
                for d in cause.details
                if isinstance(d, dict) and isinstance(d.get("rate_limited"), dict)
            ),
            30.0,
        )
        wait_s = max(1.0, wait_s)
        if self._rate_limited_s + wait_s <= self.opts.rate_limit_horizon_s:
            self._rate_limited_s += wait_s
            if record is not None:
                record.detail = f"model rate limit: waiting {wait_s:.0f}s ({cause.message})"[:500]
            await workflow.sleep(timedelta(seconds=wait_s))
            return True
        await self._park(
            f"the model's rate limit outlasted workflow.rate_limit_horizon_s ({self.opts.rate_limit_horizon_s:.0f}s): "
            f"{cause.message}. Resume with `tamma retry {self.inp.issue_number}` (or send the resume update) "
            "once the limit is lifted"
        )
        return True

    async def _waited_for_forge(self, exc: ActivityError, record: StepRecord | None) -> bool:
        """The forge holds the merge for a required review or check (MergeWaiting): wait for a
        webhook's nudge (a review, a check) or a timer backing off from one minute to an hour,
        then try again; after workflow.merge_wait_s give up. True to call the activity again.
        Histories from before this never carry the kind, so they replay unchanged."""
        cause = exc.cause
        if not (isinstance(cause, ApplicationError) and cause.type == FailureKind.MERGE_WAITING):
            return False
        if self._forge_waited_s >= self.opts.merge_wait_s:
            return False
        pause = min(60.0 * 2 ** min(self._forge_waits, 6), 3600.0, self.opts.merge_wait_s - self._forge_waited_s)
        self._forge_waits += 1
        if record is not None:
            record.detail = f"waiting for the forge: {cause.message}"[:500]
            await self._progress()
        started = workflow.now()
        self._nudged = False
        with contextlib.suppress(asyncio.TimeoutError):
            await workflow.wait_condition(
                lambda: self._nudged or bool(self._stopped), timeout=timedelta(seconds=max(pause, 1.0))
            )
        self._forge_waited_s += (workflow.now() - started).total_seconds()
        if self._stopped:
            if record is not None:
                self._end(record, "failed", self._stopped)
            raise Stopped(self._stopped)
        return True

    async def _park(self, reason: str) -> None:
        """Wait, visibly, for a person: status parked with the reason, until `resume`."""
        before = self.state.status
        self._resume_by = ""
        self.state.parked_reason = reason[:1000]
        self._set_status(TaskStatus.PARKED)
        await self._progress()
        await workflow.wait_condition(lambda: bool(self._resume_by) or bool(self._stopped))
        if self._stopped:
            raise Stopped(self._stopped)
        self.state.parked_reason = ""
        self._rate_limited_s = 0.0
        self._set_status(before)

    def _account_failed_attempt(self, cause: BaseException | None, record: StepRecord | None) -> None:
        billed = _billed(cause)
        if billed is not None:
            # What the failed attempts of a model step were billed for counts toward the
            # task's totals and budgets too.
            self.state.usage = self.state.usage.plus(billed)
            if record is not None:
                step = record.name.value
                self.state.usage_by_step[step] = self.state.usage_by_step.get(step, Usage()).plus(billed)

    def _failed(self, exc: ActivityError, name: str, record: StepRecord | None) -> NoReturn:
        if is_cancelled_exception(exc):
            # The task was cancelled while this step ran: that is a cancellation, not a failed step.
            if record is not None:
                self._end(record, "failed", "cancelled")
            raise asyncio.CancelledError() from None
        cause = exc.cause
        reason = cause.message if isinstance(cause, ApplicationError) else str(cause or exc)
        if record is not None:
            self._end(record, "failed", reason)
        billed = _billed(cause)
        self._account_failed_attempt(cause, record)
        if isinstance(cause, ApplicationError) and cause.type == FailureKind.BUDGET_EXCEEDED:
            spent = cause.details[0] if cause.details else {}
            if billed is None and isinstance(spent, dict):  # recorded before failures carried usage
                self.state.usage = self.state.usage.plus(Usage.model_validate(spent))
            raise BudgetStop(f"{name}: {reason}") from None
        raise StepFailed(f"{name} failed: {reason}") from None

    async def _progress(self) -> None:
        """Edit the one progress comment on the issue (report.progress_comment). Best effort."""
        body = progress_comment(self.state)
        try:
            await self._activity(
                names.PROGRESS,
                CommentInput(repo=self.inp.repo, issue_number=self.inp.issue_number, body=body),
                type(None),
            )
        except StepFailed as exc:
            workflow.logger.warning("could not update the progress comment: %s", exc)

    async def _comment(self, number: int, body: str, *, pull_request: bool = False) -> None:
        try:
            await self._activity(
                names.COMMENT,
                CommentInput(repo=self.inp.repo, issue_number=number, body=body, pull_request=pull_request),
                type(None),
            )
        except StepFailed as exc:
            workflow.logger.warning("could not comment on the issue: %s", exc)

    def _spend(self, step: StepName, usage: Usage, transcript: str = "") -> None:
        """Account a step's model usage, then stop if a per-issue budget is used up."""
        # Model calls, tokens and cost are counted where they happen, by provider, model and step
        # (tamma.providers.common.count_call), failed attempts included.
        self.state.usage = self.state.usage.plus(usage)
        self.state.usage_by_step[step.value] = self.state.usage_by_step.get(step.value, Usage()).plus(usage)
        if transcript and transcript not in self.state.transcripts:
            self.state.transcripts.append(transcript)
        ran_out = self.opts.budget.ran_out(self.state.usage, self._elapsed_s())
        if ran_out:
            raise BudgetStop(
                f"{ran_out} after {step.value} ({self.state.usage.tokens} tokens, "
                f"${self.state.usage.cost_usd:.4f}, {self.state.usage.agent_turns} agent turns)"
            )

    def _budget_left(self) -> Budget:
        return self.opts.budget.left_after(self.state.usage, self._elapsed_s())

    def _elapsed_s(self) -> float:
        return (workflow.now() - workflow.info().start_time).total_seconds()

    def _begin(self, step: StepName) -> StepRecord:
        if self._stopped:
            raise Stopped(self._stopped)
        record = StepRecord(name=step, started_at=workflow.now())
        self.state.steps.append(record)
        self.state.step = step
        workflow.upsert_search_attributes([search.STEP.value_set(step.value)])
        self._show()
        return record

    def _end(self, record: StepRecord, status: str, detail: str = "") -> None:
        record.status = status  # type: ignore[assignment]
        record.ended_at = workflow.now()
        workflow.metric_meter().create_histogram_timedelta(
            "tamma_step_duration", "a step's time as the workflow saw it (retries and waits included)", "ms"
        ).record(record.ended_at - record.started_at, {"step": record.name.value, "status": status})
        if detail:
            record.detail = detail[:500]

    def _set_status(self, status: TaskStatus) -> None:
        if status == TaskStatus.AWAITING_APPROVAL:
            self._waiting_since = workflow.now()
        elif self.state.status == TaskStatus.AWAITING_APPROVAL and self._waiting_since is not None:
            workflow.metric_meter().create_histogram_timedelta(
                "tamma_approval_wait", "how long a plan waited for a person", "ms"
            ).record(workflow.now() - self._waiting_since)
        self.state.status = status
        workflow.upsert_search_attributes([search.STATUS.value_set(status.value)])
        self._show()
        self._announce()

    def _announce(self) -> None:
        """Tell other systems (notify.*) of the new status, from an activity that retries on its
        own; the workflow does not wait for it, except once at its very end (_delivered)."""
        if self.state.status.value not in self.opts.notify_on:
            return
        event = task_event(self.state, workflow.now(), len(self._notes) + 1)
        self._notes.append(
            workflow.start_activity(
                names.NOTIFY,
                event,
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=RetryPolicy(initial_interval=timedelta(seconds=2), maximum_attempts=5),
                summary=f"notify: {event.status}",
            )
        )

    async def _delivered(self) -> None:
        """Before the run ends, the notifications it started get their chance (a run that ends
        abandons its activities); one that fails for good is logged, never the task's failure."""
        if self._notes:
            for outcome in await asyncio.gather(*self._notes, return_exceptions=True):
                if isinstance(outcome, BaseException):
                    workflow.logger.warning("a notification was not delivered: %s", outcome)

    def _show(self) -> None:
        workflow.set_current_details(current_details(self.state))

    def _finish(self, status: TaskStatus, message: str) -> None:
        took = workflow.now() - workflow.info().start_time
        record_finish(status, took, self._implementations, self._review_rounds, self.state.ci_fix_rounds)
        if status in (TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.BUDGET_EXCEEDED, TaskStatus.CI_FAILED):
            self.state.error = message
        self._set_status(status)


def _billed(cause: BaseException | None) -> Usage | None:
    """The model usage a failed activity reported in its failure details, if any."""
    if not isinstance(cause, ApplicationError):
        return None
    for detail in cause.details:
        if isinstance(detail, dict) and isinstance(detail.get("usage"), dict):
            return Usage.model_validate(detail["usage"])
    return None
