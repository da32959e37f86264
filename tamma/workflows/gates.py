"""The gates where a task waits for a person: the plan's approval (when the policy asks for one)
and the change's (when it touches blocked paths or nothing tested it). One wait and one way to
take a decision, used by both."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from tamma.models import (
        Analysis,
        ApprovalDecision,
        Issue,
        Plan,
        StepName,
        StepRecord,
        TaskStatus,
    )
    from tamma.policy import blocked_files, blocking_reasons

from tamma.workflows.steps import StepRunner, Stopped


class Gates(StepRunner):
    async def _approval(self, issue: Issue, analysis: Analysis, plan: Plan, may_replan: bool = False) -> bool | None:
        """The plan's gate. True to go on, False when it ended (rejected, escalated), None to plan
        again because the issue was edited while the plan waited."""
        reasons = blocking_reasons(self.opts.policy, analysis, plan)
        record = self._begin(StepName.APPROVAL)
        replan = may_replan and self._edited  # edited while it was being planned: this plan is stale
        if not replan and (self.opts.yes or not reasons):
            self._decision = ApprovalDecision(
                approved=True,
                by="--yes" if self.opts.yes else "policy",
                automatic=True,
                reason="approved up front" if self.opts.yes else "within auto-approve policy",
            )
        elif not replan:
            record.detail = "needs a person: " + "; ".join(reasons)
            if not await self._wait_for_person(lambda: may_replan and self._edited):
                self._end(record, "failed", "no decision in time: escalated")
                await self._comment(issue.number, "Tamma's plan waited too long for approval and was escalated.")
                self._finish(TaskStatus.ESCALATED, "approval timed out")
                return False
            replan = self._decision is None  # woken by an edit, not by a decision
        if replan:
            self._end(record, "skipped", "the issue was edited: planning again from the new text")
            return None
        if not await self._take_decision(record, issue.number, "Tamma's plan was rejected"):
            return False
        self._end(record, "done", f"approved by {self.state.approval.by if self.state.approval else ''}")
        return True

    async def _diff_gate(self, issue: Issue, when: str) -> bool:
        """The change's gate: the blocked-path policy on the files the branch really changes (the
        plan's list is only the model's advice), and a change nothing tested; a hit a person has
        not approved yet waits for one. True to go on."""
        fresh = self._unapproved(when)
        if not fresh:
            return True
        untested = f"untested: {self._untested}"
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
        if not await self._wait_for_person(already_waiting=True):
            self._end(record, "failed", "no decision in time: escalated")
            self._finish(TaskStatus.ESCALATED, "approval of blocked paths timed out")
            return False
        if not await self._take_decision(record, None, ""):
            return False
        self._cleared.update(fresh)
        self._end(record, "done", f"blocked paths approved by {self.state.approval.by if self.state.approval else ''}")
        return True

    def _unapproved(self, when: str) -> list[str]:
        """What in the change needs a person that no person has approved yet."""
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
        return fresh

    async def _wait_for_person(self, also: Callable[[], bool] = lambda: False, already_waiting: bool = False) -> bool:
        """The one wait of both gates: status awaiting_approval until a decision, a stop or `also`
        (an edit of the issue), for workflow.approval_timeout_s. False when the time ran out."""
        if not already_waiting:
            self._set_status(TaskStatus.AWAITING_APPROVAL)
        try:
            await workflow.wait_condition(
                lambda: self._decision is not None or bool(self._stopped) or also(),
                timeout=timedelta(seconds=self.opts.approval_timeout_s),
            )
        except TimeoutError:
            return False
        if self._stopped:
            raise Stopped(self._stopped)
        self._set_status(TaskStatus.RUNNING)
        return True

    async def _take_decision(self, record: StepRecord, comment_on: int | None, rejected: str) -> bool:
        """Record the person's (or the policy's) decision; a rejection ends the task (with a
        comment on the issue when `comment_on` is given). True when approved."""
        decision = self._decision
        assert decision is not None
        self.state.approval = decision
        if decision.approved:
            return True
        self._end(record, "failed", f"rejected by {decision.by}: {decision.reason}")
        if comment_on is not None:
            await self._comment(comment_on, f"{rejected} by {decision.by}: {decision.reason}")
        self._finish(TaskStatus.REJECTED, decision.reason or "rejected")
        return False
