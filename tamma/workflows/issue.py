"""The issue workflow: fetch → analyse → plan → approval → branch → implement ⇄ test → PR →
CI (⇄ fix) → review → merge. Deterministic: no I/O here, only activities (called by name),
timers, updates, signals and the state the `state` query returns.

Versioning rule. Runs last days (an approval waits up to a day, CI and reviews longer), so a
worker with new code replays histories written by old code. Any change to *which* commands the
workflow issues, or their order — an activity, timer, child workflow, search-attribute upsert
added, removed or moved — goes behind `workflow.patched("<what-changed>")`: the new path when
it returns True, the old path exactly as it was otherwise (old histories replay the old path; new
runs record the marker). Changing an activity's input or result *fields* is not such a change
(payloads are not compared), nor is changing pure logic between commands. Every id is registered
with its stage and dates in tamma/workflows/patches.py (a test holds code and registry together),
which says when it may be deprecated (`deprecate_patch`, old path gone) and removed. The golden
histories in tests/fixtures/histories (tests/workflows/test_replay.py) replay on every test run,
and every history the test suite makes is replayed at its end (tests/conftest.py); a new kind of
run gets a golden history once it exists (RECORD_HISTORIES=1 with the test that makes it), and
existing ones are re-recorded only when patches are deprecated — never to make a change pass."""

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
        AnalyseInput,
        AnalyseOutput,
        Analysis,
        ApprovalDecision,
        ApprovalRequest,
        BranchInput,
        Budget,
        CIStatus,
        CIWaitInput,
        CommentInput,
        EventNote,
        ImplementInput,
        ImplementResult,
        Issue,
        IssueRef,
        IssueTaskInput,
        MergeResult,
        OpenPRInput,
        Plan,
        PlanInput,
        PlanOutput,
        PRRef,
        PullRequest,
        ReplyInput,
        ReviewComment,
        SelfReviewInput,
        SelfReviewResult,
        StepName,
        StepRecord,
        TaskEvent,
        TaskState,
        TaskStatus,
        TestInput,
        TestReport,
        Usage,
    )
    from tamma.policy import blocked_files, blocking_reasons
    from tamma.workflows import search
    from tamma.workflows.review import ci_failed_note, ci_feedback, review_feedback, self_review_feedback, tests_note

M = TypeVar("M")


#: the failure type of an execution whose task ended without a merge or an open PR
TASK_ENDED = "TaskEnded"

#: planning rounds per issue: edits while a plan awaits its decision re-plan at most 3 times
MAX_PLANNING_ROUNDS = 4


class StepFailed(Exception):
    """An activity failed for good; the message is the reason shown to the user."""


class BudgetStop(Exception):
    """A per-issue budget ran out; the message names it."""


class CIStop(Exception):
    """CI still fails after the bounded fix attempts; the message says which checks."""


class Stopped(Exception):
    """The issue was closed or unassigned on the forge: stop between steps."""


@workflow.defn(name="IssueWorkflow")
class IssueWorkflow:
    @workflow.init
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

    # ---- queries, updates, signals -------------------------------------------------------------

    @workflow.query
    def state_query(self) -> TaskState:
        return self.state

    @workflow.update
    async def approve(self, req: ApprovalRequest) -> TaskState:
        self._decision = ApprovalDecision(approved=True, by=req.by, reason=req.reason)
        return self.state

    @approve.validator
    def _check_approve(self, req: ApprovalRequest) -> None:
        self._check_decidable()

    @workflow.update
    async def reject(self, req: ApprovalRequest) -> TaskState:
        self._decision = ApprovalDecision(approved=False, by=req.by, reason=req.reason)
        return self.state

    @reject.validator
    def _check_reject(self, req: ApprovalRequest) -> None:
        self._check_decidable()

    def _check_decidable(self) -> None:
        # Validators run before the update enters history, so a refused update leaves no trace.
        if self._decision is not None:
            raise ValueError(
                f"the plan was already {'approved' if self._decision.approved else 'rejected'} by {self._decision.by}"
            )
        if self.state.status != TaskStatus.AWAITING_APPROVAL:
            raise ValueError(f"this task is not waiting for approval (status: {self.state.status.value})")

    @workflow.update
    async def resume(self, req: ApprovalRequest) -> TaskState:
        """`tamma retry N` on a parked task: call the step that parked it again."""
        self._resume_by = req.by or "someone"
        return self.state

    @resume.validator
    def _check_resume(self, req: ApprovalRequest) -> None:
        if self.state.status != TaskStatus.PARKED:
            raise ValueError(f"this task is not parked (status: {self.state.status.value}); nothing to resume")

    @workflow.signal
    def resume_signal(self, req: ApprovalRequest) -> None:
        """For webhooks (`/tamma retry` on a parked task) and the Web UI."""
        if self._fresh(req.delivery) and self.state.status == TaskStatus.PARKED:
            self._resume_by = req.by or "someone"

    def _fresh(self, delivery: str) -> bool:
        if not delivery:
            return True
        if delivery in self._deliveries:
            return False
        self._deliveries = [*self._deliveries[-255:], delivery]
        return True

    @workflow.signal
    def approve_signal(self, req: ApprovalRequest) -> None:
        """For webhooks (`/tamma approve`), which cannot wait for an update's answer."""
        if self._fresh(req.delivery) and self._decision is None and self.state.status == TaskStatus.AWAITING_APPROVAL:
            self._decision = ApprovalDecision(approved=True, by=req.by, reason=req.reason)

    @workflow.signal
    def reject_signal(self, req: ApprovalRequest) -> None:
        if self._fresh(req.delivery) and self._decision is None and self.state.status == TaskStatus.AWAITING_APPROVAL:
            self._decision = ApprovalDecision(approved=False, by=req.by, reason=req.reason)

    @workflow.signal
    def ci_event(self, note: EventNote) -> None:
        """A webhook says CI or a review changed: look now instead of at the next poll."""
        if self._fresh(note.delivery):
            self._nudged = True

    @workflow.signal
    def issue_changed(self, note: EventNote) -> None:
        """Closed, deleted or Tamma unassigned: stop at the next step boundary. Edited before the
        plan was decided: plan again from the new text (after approval an edit changes nothing)."""
        if not self._fresh(note.delivery):
            return
        if note.kind in ("closed", "deleted", "unassigned"):
            self._stopped = f"the issue was {note.kind} ({note.detail or 'on the forge'})"
        elif note.kind == "edited" and self.state.approval is None:
            self._edited = True

    # ---- the run -----------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: IssueTaskInput) -> TaskState:
        # Counted by the worker that runs the task (the SDK's meter counts nothing on replay).
        workflow.metric_meter().create_counter("tamma_tasks_started", "tasks whose workflow began").add(1)
        try:
            await self._work()
        except StepFailed as exc:
            self._finish(TaskStatus.FAILED, str(exc))
        except BudgetStop as exc:
            self._finish(TaskStatus.BUDGET_EXCEEDED, str(exc))
        except CIStop as exc:
            self._finish(TaskStatus.CI_FAILED, str(exc))
        except Stopped as exc:
            self._finish(TaskStatus.CANCELLED, str(exc))
        except asyncio.CancelledError:
            self._finish(TaskStatus.CANCELLED, "cancelled")
            raise
        # The issue's progress comment says how the task ended — failed (even in analyse, before
        # any comment), escalated, rejected, stopped — not the last step it was on.
        if self.state.status != TaskStatus.MERGED:
            workflow.deprecate_patch("progress-on-end")
            await self._progress()
        await self._delivered()
        # A task that did not end in a merge or an open PR ends as a *failed* execution, so the
        # Web UI, `temporal workflow list` and alerting see it as one, with the reason as the
        # failure message; the final state travels in the failure's details (TaskService.result).
        if self.state.status not in (TaskStatus.MERGED, TaskStatus.PR_OPEN):
            workflow.deprecate_patch("unsuccessful-task-fails-execution")
            raise ApplicationError(
                f"{self.state.status.value}: {self._reason()}",
                self.state.model_dump(mode="json"),
                type=TASK_ENDED,
                non_retryable=True,
            )
        return self.state

    def _reason(self) -> str:
        s = self.state
        if s.error:
            return s.error
        if s.approval is not None and not s.approval.approved:
            return f"rejected by {s.approval.by}: {s.approval.reason}"
        last = s.steps[-1].detail if s.steps else ""
        return last or s.status.value

    async def _work(self) -> None:
        repo, opts = self.inp.repo, self.opts
        for session in range(1, MAX_PLANNING_ROUNDS + 1):
            self._edited = False
            issue, analysis, plan = await self._understand(session)
            decided = await self._approval(issue, analysis, plan, may_replan=session < MAX_PLANNING_ROUNDS)
            if decided is None:
                continue  # the issue was edited while its plan waited: read it again, plan again
            if not decided:
                return
            break
        branch = f"tamma/issue-{issue.number}"
        self.state.branch = branch
        await self._step(
            StepName.BRANCH,
            names.CREATE_BRANCH,
            BranchInput(repo=repo, issue_number=issue.number, branch=branch),
            str,
            detail=lambda _: branch,
        )
        iteration = await self._implement_until_green(issue, plan, branch, iteration=0, feedback="")
        if opts.self_review:
            iteration = await self._self_review(issue, plan, branch, iteration)
        workflow.deprecate_patch("blocked-paths-on-diff")
        if not await self._diff_gate(issue, "before its PR opens"):
            return
        pr = await self._step(
            StepName.OPEN_PR,
            names.OPEN_PR,
            OpenPRInput(repo=repo, issue=issue, plan=plan, branch=branch, tests=tests_note(self.state.tests)),
            PullRequest,
            detail=lambda p: p.url,
        )
        self.state.pull_request = pr
        await self._progress()
        for _ in range(opts.max_review_rounds + 1):
            iteration = await self._green_ci(issue, plan, branch, pr, iteration)
            feedback = await self._new_review_feedback(pr)
            if not feedback:
                break
            self._review_rounds += 1
            iteration = await self._implement_until_green(issue, plan, branch, iteration, feedback)
            workflow.deprecate_patch("reply-to-reviews")
            await self._reply_to_reviews(pr)
        else:
            raise StepFailed(f"review comments still open after {opts.max_review_rounds} rounds")
        if not opts.auto_merge:
            self._finish(TaskStatus.PR_OPEN, f"PR ready: {pr.url}")
            return
        workflow.deprecate_patch("blocked-paths-on-diff")
        if not await self._diff_gate(issue, "before merge"):
            return
        workflow.deprecate_patch("merge-pins-ci-sha")
        pinned = self._ci_sha  # the merge is of the commit CI passed on, or none
        merged = await self._step(
            StepName.MERGE,
            names.MERGE,
            PRRef(repo=repo, pr_number=pr.number, head_sha=pinned),
            MergeResult,
            detail=lambda m: m.sha[:10],
        )
        self.state.merge_sha = merged.sha
        self.state.pull_request = pr.model_copy(update={"state": "merged", "merge_sha": merged.sha})
        self._finish(TaskStatus.MERGED, f"merged as {merged.sha[:10]}")
        await self._progress()

    async def _understand(self, session: int) -> tuple[Issue, Analysis, Plan]:
        """Fetch the issue, analyse it, plan; `session` counts planning rounds (an edit adds one)."""
        repo, opts = self.inp.repo, self.opts
        issue = await self._step(
            StepName.FETCH,
            names.FETCH_ISSUE,
            IssueRef(repo=repo, number=self.inp.issue_number),
            Issue,
            detail=lambda i: i.title,
        )
        self.state.issue_title = issue.title
        analysed = await self._step(
            StepName.ANALYSE,
            names.ANALYSE,
            AnalyseInput(repo=repo, issue=issue, transcript=opts.transcript, session=session),
            AnalyseOutput,
            detail=lambda a: f"complexity {a.analysis.complexity}, risk {a.analysis.risk}",
        )
        analysis = self.state.analysis = analysed.analysis
        self._spend(StepName.ANALYSE, analysed.usage, analysed.transcript_path)
        planned = await self._step(
            StepName.PLAN,
            names.PLAN,
            PlanInput(repo=repo, issue=issue, analysis=analysis, transcript=opts.transcript, session=session),
            PlanOutput,
            detail=lambda p: f"{len(p.plan.steps)} steps, {len(p.plan.files)} files, ~{p.plan.estimate_hours:g}h",
        )
        plan = self.state.plan = planned.plan
        self._spend(StepName.PLAN, planned.usage, planned.transcript_path)
        await self._progress()
        return issue, analysis, plan

    async def _approval(self, issue: Issue, analysis: Analysis, plan: Plan, may_replan: bool = False) -> bool | None:
        """True to go on, False when it ended (rejected, escalated), None to plan again because the
        issue was edited while the plan waited."""
        reasons = blocking_reasons(self.opts.policy, analysis, plan)
        record = self._begin(StepName.APPROVAL)
        replan = may_replan and self._edited
        if replan:
            pass  # edited while it was being planned: this plan is already stale
        elif self.opts.yes or not reasons:
            by = "--yes" if self.opts.yes else "policy"
            self._decision = ApprovalDecision(
                approved=True,
                by=by,
                automatic=True,
                reason="approved up front" if self.opts.yes else "within auto-approve policy",
            )
        else:
            record.detail = "needs a person: " + "; ".join(reasons)
            self._set_status(TaskStatus.AWAITING_APPROVAL)
            try:
                await workflow.wait_condition(
                    lambda: self._decision is not None or bool(self._stopped) or (may_replan and self._edited),
                    timeout=timedelta(seconds=self.opts.approval_timeout_s),
                )
            except TimeoutError:
                self._end(record, "failed", "no decision in time: escalated")
                await self._comment(issue.number, "Tamma's plan waited too long for approval and was escalated.")
                self._finish(TaskStatus.ESCALATED, "approval timed out")
                return False
            if self._stopped:
                raise Stopped(self._stopped)
            self._set_status(TaskStatus.RUNNING)
            replan = self._decision is None  # woken by an edit, not by a decision
        if replan:
            self._end(record, "skipped", "the issue was edited: planning again from the new text")
            return None
        decision = self._decision
        assert decision is not None
        self.state.approval = decision
        if not decision.approved:
            self._end(record, "failed", f"rejected by {decision.by}: {decision.reason}")
            await self._comment(issue.number, f"Tamma's plan was rejected by {decision.by}: {decision.reason}")
            self._finish(TaskStatus.REJECTED, decision.reason or "rejected")
            return False
        self._end(record, "done", f"approved by {decision.by}")
        return True

    async def _diff_gate(self, issue: Issue, when: str) -> bool:
        """The blocked-path policy on the files the branch really changes (the plan's list is only
        the model's advice): a hit a person has not yet approved waits for one. True to go on."""
        fresh = [f for f in blocked_files(self.opts.policy, self._branch_files) if f not in self._cleared]
        unlisted = self._branch_total - len(self._branch_files)
        if unlisted > 0 and self.opts.policy.blocked_paths:
            # More changed paths than history can carry: what was not listed may be blocked.
            hidden = f"{unlisted} changed files beyond the {len(self._branch_files)} listed"
            if hidden not in self._cleared:
                fresh.append(hidden)
        # A change nothing tested never merges on its own: it waits for a person like a blocked path.
        untested = f"untested: {self._untested}" if self._untested else ""
        if untested and untested not in self._cleared and when == "before merge":
            fresh.append(untested)
        if not fresh:
            return True
        record = self._begin(StepName.APPROVAL)
        shown = ", ".join(fresh[:10]) + (f" and {len(fresh) - 10} more" if len(fresh) > 10 else "")
        what = (
            "the change touches blocked paths or was not tested"
            if untested in fresh
            else "the change touches blocked paths"
        )
        record.detail = f"needs a person: {what} ({shown}) {when}"
        self._decision = None
        self._set_status(TaskStatus.AWAITING_APPROVAL)
        await self._comment(
            issue.number,
            f"Tamma's change {what.removeprefix('the change ')} ({shown}); it waits for a person {when}: "
            f"`tamma approve {issue.number}` or a `/tamma approve` comment.",
        )
        try:
            await workflow.wait_condition(
                lambda: self._decision is not None or bool(self._stopped),
                timeout=timedelta(seconds=self.opts.approval_timeout_s),
            )
        except TimeoutError:
            self._end(record, "failed", "no decision in time: escalated")
            self._finish(TaskStatus.ESCALATED, "approval of blocked paths timed out")
            return False
        if self._stopped:
            raise Stopped(self._stopped)
        self._set_status(TaskStatus.RUNNING)
        decision = self._decision
        assert decision is not None
        self.state.approval = decision
        if not decision.approved:
            self._end(record, "failed", f"rejected by {decision.by}: {decision.reason}")
            self._finish(TaskStatus.REJECTED, decision.reason or "rejected")
            return False
        self._cleared.update(fresh)
        self._end(record, "done", f"blocked paths approved by {decision.by}")
        return True

    async def _implement_until_green(self, issue: Issue, plan: Plan, branch: str, iteration: int, feedback: str) -> int:
        repo, opts = self.inp.repo, self.opts
        for _ in range(opts.max_fix_attempts + 1):
            iteration += 1
            self._implementations += 1
            result = await self._step(
                StepName.IMPLEMENT,
                names.IMPLEMENT,
                ImplementInput(
                    repo=repo,
                    issue=issue,
                    plan=plan,
                    branch=branch,
                    iteration=iteration,
                    feedback=feedback,
                    transcript=opts.transcript,
                    budget_left=self._budget_left(),
                ),
                ImplementResult,
                heavy=True,
                detail=lambda r, n=iteration: f"iteration {n}: {r.commit[:10]}{' (reused)' if r.reused else ''}",
            )
            self.state.commit = result.commit
            self._branch_files = result.branch_files
            self._branch_total = result.branch_files_total
            self._spend(StepName.IMPLEMENT, result.usage, result.transcript_path)
            report = await self._step(
                StepName.TEST,
                names.RUN_TESTS,
                TestInput(repo=repo, branch=branch, commit=result.commit),
                TestReport,
                heavy=True,
                detail=lambda t: t.summary,
            )
            self.state.tests.append(report)
            self._untested = report.summary if report.untested else ""
            if report.passed:
                return iteration
            feedback = f"Tests failed: {report.summary}\n{report.output_tail}"
        raise StepFailed(f"tests still fail after {opts.max_fix_attempts + 1} attempts: {report.summary}")

    async def _self_review(self, issue: Issue, plan: Plan, branch: str, iteration: int) -> int:
        """A model reviews the green branch before it becomes a PR; what it finds goes back to
        the agent (bounded), and the last verdict is kept in the state for people to read."""
        for round_ in range(self.opts.max_self_review_rounds + 1):
            result = await self._step(
                StepName.SELF_REVIEW,
                names.SELF_REVIEW,
                SelfReviewInput(
                    repo=self.inp.repo,
                    issue=issue,
                    plan=plan,
                    branch=branch,
                    iteration=iteration,
                    transcript=self.opts.transcript,
                ),
                SelfReviewResult,
                heavy=True,
                detail=lambda r: (
                    "approved"
                    if r.review.approve or not r.review.findings
                    else f"{len(r.review.findings)} finding(s): {r.review.summary}"
                )[:300],
            )
            self._spend(StepName.SELF_REVIEW, result.usage, result.transcript_path)
            review = self.state.self_review = result.review
            if review.approve or not review.findings:
                return iteration
            if round_ == self.opts.max_self_review_rounds:
                break
            iteration = await self._implement_until_green(issue, plan, branch, iteration, self_review_feedback(review))
        # Out of rounds: the change still goes up as a PR, with the open findings in its state,
        # and people decide; a reviewer model is advice, not a gate on its own.
        return iteration

    async def _green_ci(self, issue: Issue, plan: Plan, branch: str, pr: PullRequest, iteration: int) -> int:
        """Wait for CI; when it fails, hand the failing checks and their logs to the agent, push
        its fix and wait again — at most `max_ci_fix_attempts` times, then stop as ci_failed with
        the checks' summary on the pull request. Returns the iteration count."""
        attempts = self.opts.max_ci_fix_attempts
        fixes = 0
        failed_sha = ""
        while True:
            status = await self._wait_for_ci(pr, stale=failed_sha if self.state.commit != failed_sha else "")
            if status.state == "success":
                return iteration
            workflow.deprecate_patch("ci-fix-loop")
            if fixes >= attempts:
                await self._comment(pr.number, ci_failed_note(status, fixes), pull_request=True)
                raise CIStop(f"CI still fails on {pr.url} after {fixes} fix attempt(s): {status.detail}")
            fixes += 1
            failed_sha = status.sha
            self.state.ci_fix_rounds += 1
            iteration = await self._implement_until_green(
                issue, plan, branch, iteration, ci_feedback(status, fixes, attempts)
            )

    async def _wait_for_ci(self, pr: PullRequest, stale: str = "") -> CIStatus:
        """CI's verdict on the PR's head: success or failure (a failure on `stale`, the commit a
        fix replaced, is the forge not having seen the push yet, and is waited out)."""
        record = self._begin(StepName.CI)
        deadline = workflow.now() + timedelta(seconds=self.opts.ci_timeout_s)
        workflow.deprecate_patch("ci-wait-activity")
        return await self._wait_for_ci_in_activity(pr, stale, record, deadline)

    async def _wait_for_ci_in_activity(
        self, pr: PullRequest, stale: str, record: StepRecord, deadline: datetime
    ) -> CIStatus:
        """The polls happen in one heartbeating activity, so a CI wait of hours adds a handful of
        events, not thousands. A webhook's nudge or a stop cancels it: a nudge starts it again
        (it polls at once), a stop ends the step."""
        o = self.opts
        while True:
            if self._stopped:
                self._end(record, "failed", self._stopped)
                raise Stopped(self._stopped)
            left = (deadline - workflow.now()).total_seconds()
            wait = CIWaitInput(
                repo=self.inp.repo, pr_number=pr.number, stale=stale, timeout_s=max(left, 1.0), poll_s=o.ci_poll_s
            )
            self._nudged = False
            handle = workflow.start_activity(
                names.WAIT_FOR_CI,
                wait,
                result_type=CIStatus,
                start_to_close_timeout=timedelta(seconds=max(left, 1.0) + 120),
                heartbeat_timeout=timedelta(seconds=o.heartbeat_timeout_s),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=o.retry_initial_s),
                    maximum_interval=timedelta(seconds=max(o.retry_initial_s * 8, 1)),
                    maximum_attempts=o.retry_attempts,
                ),
                summary=f"CI of !{pr.number}",
            )
            await workflow.wait_condition(lambda h=handle: h.done() or self._nudged or bool(self._stopped))  # type: ignore[misc]
            if not handle.done():
                handle.cancel()
                with contextlib.suppress(ActivityError, asyncio.CancelledError):
                    await handle
                continue  # stopped: the check above ends it; nudged: poll again at once
            status: CIStatus = await handle
            if status.state == "success":
                self._end(record, "done", status.detail)
                self._ci_sha = status.sha
                return status
            if status.state == "failure":
                self._end(record, "failed", status.detail)
                return status
            self._end(record, "failed", "CI did not finish in time")
            raise StepFailed(f"CI on {pr.url} did not finish within {self.opts.ci_timeout_s:.0f}s")

    async def _new_review_feedback(self, pr: PullRequest) -> str:
        record = self._begin(StepName.REVIEW)
        comments: list[ReviewComment] = await self._activity(
            names.REVIEW_COMMENTS, PRRef(repo=self.inp.repo, pr_number=pr.number), list[ReviewComment]
        )
        feedback, fresh = review_feedback(comments, self._seen_reviews)
        self._seen_reviews.update(fresh)
        self._answering = [c for c in comments if c.id in fresh]
        self._end(record, "done", f"{len(fresh)} new comment(s)" if fresh else "no new comments")
        return feedback

    # ---- plumbing ----------------------------------------------------------------------------

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
                    name, arg, result_type=result_type, retry_policy=retry, summary=_summary(name, arg), **extra
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
        """Edit the one progress comment on the issue: plan, checklist, PR, cost. Best effort."""
        s = self.state
        lines = [f"**Tamma** is working on this issue — status: `{s.status.value}`", ""]
        if s.plan:
            lines += [f"Plan: {s.plan.summary}", ""]
        lines += [
            f"- [{'x' if r.status == 'done' else ' '}] {r.name.value}" + (f" — {r.detail}" if r.detail else "")
            for r in s.steps
        ]
        if s.pull_request:
            lines += ["", f"Pull request: {s.pull_request.url}"]
        if s.error and s.status not in (TaskStatus.RUNNING, TaskStatus.MERGED):
            lines += ["", f"Ended: {s.error[:500]}"]
        if s.usage.calls:
            lines += ["", f"Model usage: {s.usage.tokens} tokens, ${s.usage.cost_usd:.4f}"]
        try:
            await self._activity(
                names.PROGRESS,
                CommentInput(repo=self.inp.repo, issue_number=self.inp.issue_number, body="\n".join(lines)),
                type(None),
            )
        except StepFailed as exc:
            workflow.logger.warning("could not update the progress comment: %s", exc)

    async def _reply_to_reviews(self, pr: PullRequest) -> None:
        """Tell each review thread the new commit answers it. Best effort: a reviewer still sees
        the commit if the reply cannot be posted."""
        try:
            posted = await self._activity(
                names.REPLY_TO_REVIEWS,
                ReplyInput(repo=self.inp.repo, pr_number=pr.number, comments=self._answering, commit=self.state.commit),
                int,
            )
            self.state.review_replies += posted
        except StepFailed as exc:
            workflow.logger.warning("could not reply to the review threads: %s", exc)

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
        left = self._budget_left()
        spent_out = [
            name
            for name, value in (
                ("tokens", left.max_tokens),
                ("cost", left.max_cost_usd),
                ("agent turns", left.max_agent_turns),
                ("wall time", left.max_wall_s),
            )
            if value is not None and value <= 0
        ]
        if spent_out:
            raise BudgetStop(
                f"the {spent_out[0]} budget ran out after {step.value} "
                f"({self.state.usage.tokens} tokens, ${self.state.usage.cost_usd:.4f}, "
                f"{self.state.usage.agent_turns} agent turns)"
            )

    def _budget_left(self) -> Budget:
        b, u = self.opts.budget, self.state.usage
        elapsed = (workflow.now() - workflow.info().start_time).total_seconds()
        return Budget(
            max_tokens=None if b.max_tokens is None else b.max_tokens - u.tokens,
            max_cost_usd=None if b.max_cost_usd is None else round(b.max_cost_usd - u.cost_usd, 6),
            max_agent_turns=None if b.max_agent_turns is None else b.max_agent_turns - u.agent_turns,
            max_wall_s=None if b.max_wall_s is None else b.max_wall_s - elapsed,
        )

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
        own; the workflow does not wait for it, except once at its very end (below)."""
        s = self.state
        if s.status.value not in self.opts.notify_on:
            return
        event = TaskEvent(
            task=s.workflow_id,
            repository=s.repo.key,
            issue=s.issue_number,
            status=s.status.value,
            reason=(s.error or s.parked_reason)[:500],
            issue_title=s.issue_title,
            pull_request=s.pull_request.url if s.pull_request else "",
            at=workflow.now(),
            sequence=len(self._notes) + 1,
        )
        self._notes.append(
            workflow.start_activity(
                names.NOTIFY,
                event,
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=RetryPolicy(initial_interval=timedelta(seconds=2), maximum_attempts=5),
                summary=f"notify: {s.status.value}",
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
        """The workflow's current details (Markdown, on its page in the Temporal Web UI): where
        it is, the plan, the PR, and — when it waits for a person — exactly how to answer."""
        s = self.state
        n = self.inp.issue_number
        title = f" {s.issue_title}" if s.issue_title else ""
        lines = [f"### #{n}{title} — `{s.repo.key}`", "", f"**Status:** `{s.status.value}`"]
        if s.step is not None and not s.status.finished:
            lines.append(
                f"**Step:** {s.step.value}" + (f" — {s.steps[-1].detail}" if s.steps and s.steps[-1].detail else "")
            )
        if s.status == TaskStatus.AWAITING_APPROVAL:
            lines += [
                "",
                "**Waiting for approval.** Approve or reject from here: *Send a Signal* `approve_signal` "
                '(or `reject_signal`) with the input `{"by": "your name", "reason": "why"}` — or run '
                f"`tamma approve {n}` / `tamma reject {n} --reason ...`, or comment `/tamma approve`.",
            ]
        if s.status == TaskStatus.PARKED:
            lines += [
                "",
                f"**Parked:** {s.parked_reason}",
                "",
                'Resume: *Send a Signal* `resume_signal` with `{"by": "your name"}`.',
            ]
        if s.plan is not None:
            lines += ["", f"**Plan:** {s.plan.summary}"]
        if s.pull_request is not None:
            lines += ["", f"**Pull request:** {s.pull_request.url}"]
        if s.error:
            lines += ["", f"**Reason:** {s.error}"]
        workflow.set_current_details("\n".join(lines)[:4000])

    def _finish(self, status: TaskStatus, message: str) -> None:
        # Metrics from workflow code go through the SDK's meter, which counts nothing on replay.
        meter = workflow.metric_meter()
        outcome = {"outcome": status.value}
        meter.create_counter("tamma_tasks_finished", "tasks that ended, by outcome").add(1, outcome)
        meter.create_histogram_timedelta(
            "tamma_task_duration", "a task's time from start to end (approval waits included)", "ms"
        ).record(workflow.now() - workflow.info().start_time, outcome)
        meter.create_histogram("tamma_fix_iterations", "implement rounds after the first, per task").record(
            max(0, self._implementations - 1), outcome
        )
        meter.create_histogram("tamma_review_rounds", "reviewers' rounds of comments answered, per task").record(
            self._review_rounds, outcome
        )
        if self.state.ci_fix_rounds:
            meter.create_counter("tamma_ci_fix_rounds", "failed CIs handed back to the agent").add(
                self.state.ci_fix_rounds
            )
        if status in (TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.BUDGET_EXCEEDED, TaskStatus.CI_FAILED):
            self.state.error = message
        self._set_status(status)


def _summary(name: str, arg: BaseModel) -> str:
    """The one line the Web UI shows for a step: what it does, and which round."""
    iteration = getattr(arg, "iteration", None)
    if isinstance(arg, ImplementInput) and arg.feedback:
        return f"{name}, iteration {iteration} (answering feedback)"
    return f"{name}, iteration {iteration}" if iteration else name


def _billed(cause: BaseException | None) -> Usage | None:
    """The model usage a failed activity reported in its failure details, if any."""
    if not isinstance(cause, ApplicationError):
        return None
    for detail in cause.details:
        if isinstance(detail, dict) and isinstance(detail.get("usage"), dict):
            return Usage.model_validate(detail["usage"])
    return None
