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

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from tamma import activity_names as names
    from tamma.models import (
        AnalyseInput,
        AnalyseOutput,
        Analysis,
        ApprovalDecision,
        ApprovalRequest,
        BranchInput,
        EventNote,
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
        StepName,
        TaskState,
        TaskStatus,
    )
    from tamma.workflows.review import tests_note

from tamma.workflows.changes import Changes
from tamma.workflows.gates import Gates
from tamma.workflows.report import current_details, ending
from tamma.workflows.steps import BudgetStop, CIStop, StepFailed, Stopped

#: the failure type of an execution whose task ended without a merge or an open PR
TASK_ENDED = "TaskEnded"

#: planning rounds per issue: edits while a plan awaits its decision re-plan at most 3 times
MAX_PLANNING_ROUNDS = 4


@workflow.defn(name="IssueWorkflow")
class IssueWorkflow(Gates, Changes):
    @workflow.init
    def __init__(self, inp: IssueTaskInput) -> None:
        super().__init__(inp)

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
        if workflow.patched("details-memo"):
            # The Web UI shows "current details" by asking a worker, so a finished task's page
            # was empty when none ran; a memo is stored with the run and shown without one.
            workflow.upsert_memo({"tamma_details": current_details(self.state)})
        # A task that did not end in a merge or an open PR ends as a *failed* execution, so the
        # Web UI, `temporal workflow list` and alerting see it as one, with the reason as the
        # failure message; the final state travels in the failure's details (TaskService.result).
        if self.state.status not in (TaskStatus.MERGED, TaskStatus.PR_OPEN):
            workflow.deprecate_patch("unsuccessful-task-fails-execution")
            raise ApplicationError(
                f"{self.state.status.value}: {ending(self.state)}",
                self.state.model_dump(mode="json"),
                type=TASK_ENDED,
                non_retryable=True,
            )
        return self.state

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
            OpenPRInput(
                repo=repo,
                issue=issue,
                plan=plan,
                branch=branch,
                tests=tests_note(self.state.tests),
                draft=bool(self._untested),  # nothing tested it: a draft, and the merge waits for a person
            ),
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
        # Versioned (only runs that ask for a window record the marker): a window to object in.
        if opts.merge_delay_s > 0 and workflow.patched("merge-delay") and not await self._merge_window(pr):
            self._finish(TaskStatus.PR_OPEN, f"a reviewer objected during the merge window: {pr.url} stays open")
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
