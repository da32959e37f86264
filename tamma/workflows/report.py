"""What a task tells people and other systems — the progress comment on the issue, the details
on its Temporal Web UI page, the notifications' events, the one-line step summaries, the finish
metrics — as functions of its state. Deterministic: called from workflow code."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel

    from tamma.models import ImplementInput, TaskEvent, TaskState, TaskStatus


def progress_comment(s: TaskState) -> str:
    """The one progress comment on the issue: plan, checklist, PR, how it ended, cost."""
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
    return "\n".join(lines)


def current_details(s: TaskState) -> str:
    """The workflow's current details (Markdown, on its page in the Temporal Web UI): where it
    is, the plan, the PR, and — when it waits for a person — exactly how to answer."""
    n = s.issue_number
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
    if s.approval is not None:
        verdict = "Approved" if s.approval.approved else "Rejected"
        lines += ["", f"**{verdict} by:** {s.approval.by}" + (f" — {s.approval.reason}" if s.approval.reason else "")]
    if s.pull_request is not None:
        lines += ["", f"**Pull request:** {s.pull_request.url}"]
    if s.error:
        lines += ["", f"**Reason:** {s.error}"]
    return "\n".join(lines)[:4000]


def task_event(s: TaskState, at: datetime, sequence: int) -> TaskEvent:
    """What a status change tells other systems (notify.*)."""
    return TaskEvent(
        task=s.workflow_id,
        repository=s.repo.key,
        issue=s.issue_number,
        status=s.status.value,
        reason=(s.error or s.parked_reason)[:500],
        issue_title=s.issue_title,
        pull_request=s.pull_request.url if s.pull_request else "",
        at=at,
        sequence=sequence,
    )


def ending(s: TaskState) -> str:
    """Why the task ended, in one line: its error, the rejection, or its last step's detail."""
    if s.error:
        return s.error
    if s.approval is not None and not s.approval.approved:
        return f"rejected by {s.approval.by}: {s.approval.reason}"
    last = s.steps[-1].detail if s.steps else ""
    return last or s.status.value


def step_summary(name: str, arg: BaseModel) -> str:
    """The one line the Web UI shows for a step: what it does, and which round."""
    iteration = getattr(arg, "iteration", None)
    if isinstance(arg, ImplementInput) and arg.feedback:
        return f"{name}, iteration {iteration} (answering feedback)"
    return f"{name}, iteration {iteration}" if iteration else name


def record_finish(status: TaskStatus, took: timedelta, implementations: int, review_rounds: int, ci_fixes: int) -> None:
    """The task's end in the worker's metrics (the SDK's meter counts nothing on replay)."""
    meter = workflow.metric_meter()
    outcome: dict[str, Any] = {"outcome": status.value}
    meter.create_counter("tamma_tasks_finished", "tasks that ended, by outcome").add(1, outcome)
    meter.create_histogram_timedelta(
        "tamma_task_duration", "a task's time from start to end (approval waits included)", "ms"
    ).record(took, outcome)
    meter.create_histogram("tamma_fix_iterations", "implement rounds after the first, per task").record(
        max(0, implementations - 1), outcome
    )
    meter.create_histogram("tamma_review_rounds", "reviewers' rounds of comments answered, per task").record(
        review_rounds, outcome
    )
    if ci_fixes:
        meter.create_counter("tamma_ci_fix_rounds", "failed CIs handed back to the agent").add(ci_fixes)
    # Temporal ends a run at 51,200 events; a task's stays near a hundred whatever CI takes
    # (CI is polled inside one activity): this shows it per task, and a regression at once.
    meter.create_histogram("tamma_task_history_events", "events in a task's history when it ended").record(
        workflow.info().get_current_history_length(), outcome
    )
