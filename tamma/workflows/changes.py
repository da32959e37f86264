"""Making the change and getting it accepted: implement ⇄ test until green, the optional
self-review, CI (waited for in one heartbeating activity, a red CI handed back to the agent a
bounded number of times) and reviewers' comments."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from tamma import activity_names as names
    from tamma.models import (
        CIStatus,
        CIWaitInput,
        ImplementInput,
        ImplementResult,
        Issue,
        Plan,
        PRRef,
        PullRequest,
        ReplyInput,
        ReviewComment,
        SelfReviewInput,
        SelfReviewResult,
        StepName,
        StepRecord,
        TestInput,
        TestReport,
    )
    from tamma.workflows.review import ci_failed_note, ci_feedback, review_feedback, self_review_feedback

from tamma.workflows.steps import CIStop, StepFailed, StepRunner, Stopped

#: restarts of one CI wait that webhook nudges may cause (each ~8 history events)
CI_NUDGES = 20


class Changes(StepRunner):
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
        (it polls at once), a stop ends the step. Each restart costs ~8 history events, so a
        wait takes at most CI_NUDGES of them; later nudges are left to the activity's own polls
        (every workflow.ci_poll_s) — a forge sending hundreds of check events cannot grow it."""
        o = self.opts
        # Versioned: histories recorded before restarted on every nudge.
        budget = CI_NUDGES if workflow.patched("ci-nudge-budget") else None
        restarts = 0
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
            may_restart = budget is None or restarts < budget
            await workflow.wait_condition(
                lambda h=handle, again=may_restart: (  # type: ignore[misc]
                    h.done() or (self._nudged and again) or bool(self._stopped)
                )
            )
            if not handle.done():
                restarts += 1
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

    async def _merge_window(self, pr: PullRequest) -> bool:
        """workflow.merge_delay_s before the merge: a review webhook (or the window's end) looks
        for new trusted review comments; any is an objection (False: leave the PR to people)."""
        record = self._begin(StepName.MERGE)
        record.detail = f"merging in {self.opts.merge_delay_s:.0f}s unless a reviewer objects (workflow.merge_delay_s)"
        deadline = workflow.now() + timedelta(seconds=self.opts.merge_delay_s)
        while True:
            self._nudged = False
            left = (deadline - workflow.now()).total_seconds()
            if left > 0:
                with contextlib.suppress(asyncio.TimeoutError):
                    await workflow.wait_condition(
                        lambda: self._nudged or bool(self._stopped), timeout=timedelta(seconds=left)
                    )
            if self._stopped:
                self._end(record, "failed", self._stopped)
                raise Stopped(self._stopped)
            if await self._new_review_feedback(pr):
                self._end(record, "failed", "a reviewer objected during the merge window")
                return False
            if workflow.now() >= deadline:
                self._end(record, "done", f"no objection in {self.opts.merge_delay_s:.0f}s")
                return True

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
