"""How a task looks in the terminal."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Group, RenderableType
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from tamma.models import Plan, SelfReview, StepRecord, TaskState, TaskSummary

_MARK = {"done": ("✔", "green"), "failed": ("✘", "red"), "skipped": ("–", "dim")}


def _elapsed(record: StepRecord) -> str:
    end = record.ended_at or datetime.now(UTC)
    return f"{(end - record.started_at).total_seconds():5.1f}s"


def steps_table(state: TaskState, note: str = "") -> RenderableType:
    """The live view; `note` (e.g. "retrying in 2s ...") replaces the running step's detail."""
    table = Table.grid(padding=(0, 2))
    for record in state.steps:
        detail = record.detail
        if record.status == "running":
            mark: RenderableType = Spinner("dots", style="cyan")
            detail = note or detail
        else:
            symbol, style = _MARK[record.status]
            mark = Text(symbol, style=style)
        table.add_row(
            mark,
            Text(record.name.value, style="bold"),
            _elapsed(record),
            Text(detail, overflow="fold", style="yellow" if note and record.status == "running" else ""),
        )
    header = Text(f"{state.workflow_id}  [{state.status.value}]", style="bold cyan")
    return Group(header, table)


def step_line(record: StepRecord, note: str = "") -> Text:
    """One step as plain text: details come from issues, models and forges, so never markup."""
    symbol = _MARK.get(record.status, ("…", ""))[0]
    return Text(f"{symbol} {record.name.value:<11} {_elapsed(record)}  {note or record.detail}")


def plan_panel(plan: Plan) -> RenderableType:
    table = Table(title="Plan", show_header=False, expand=False)
    table.add_row("summary", Text(plan.summary))
    for n, step in enumerate(plan.steps, 1):
        table.add_row(f"step {n}", Text(f"{step.title}" + (f" — {step.detail}" if step.detail else "")))
    table.add_row("files", Text(", ".join(plan.files) or "-"))
    table.add_row("estimate", f"{plan.estimate_hours:g} h")
    return table


def review_panel(review: SelfReview) -> RenderableType:
    verdict = "approved" if review.approve else "changes asked"
    table = Table(title=f"Self-review: {verdict}", show_header=False, expand=False)
    table.add_row("summary", Text(review.summary))
    for f in review.findings:
        where = f"{f.path}:{f.line}" if f.path and f.line else (f.path or "-")
        table.add_row(Text(where), Text(f.problem + (f" — {f.suggestion}" if f.suggestion else "")))
    return table


def tasks_table(rows: list[TaskSummary]) -> RenderableType:
    """Full task ids (folded, never cut: `tamma status` takes them as printed)."""
    table = Table("status", "step", "started", "task")
    table.columns[3].overflow = "fold"
    for r in rows:
        started = r.started_at.strftime("%Y-%m-%d %H:%M") if r.started_at else ""
        table.add_row(Text(r.status), Text(r.step), started, Text(r.workflow_id))
    return table


def usage_table(state: TaskState) -> RenderableType:
    table = Table("step", "calls", "input", "output", "cache read", "cache write", "cost $", title="Model usage")
    rows = [*state.usage_by_step.items(), ("total", state.usage)]
    for name, u in rows:
        table.add_row(
            name,
            str(u.calls),
            str(u.input_tokens),
            str(u.output_tokens),
            str(u.cache_read_tokens),
            str(u.cache_write_tokens),
            f"{u.cost_usd:.4f}",
        )
    return table
