"""Where a task stands. Its own module, free of pydantic, because the CLI reads it in command
signatures at start (`tamma task list --status`) and `tamma --help` must not load the models."""

from __future__ import annotations

from enum import StrEnum


class TaskStatus(StrEnum):
    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"
    MERGED = "merged"
    PR_OPEN = "pr_open"
    REJECTED = "rejected"
    ESCALATED = "escalated"
    BUDGET_EXCEEDED = "budget_exceeded"
    CI_FAILED = "ci_failed"
    PARKED = "parked"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self not in (TaskStatus.RUNNING, TaskStatus.AWAITING_APPROVAL, TaskStatus.PARKED)
