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


def steps_table(state: TaskState) -> RenderableType:
    table = Table.grid(padding=(0, 2))
    for record in state.steps:
        if record.status == "running":
            mark: RenderableType = Spinner("dots", style="cyan")
        else:
            symbol, style = _MARK[record.status]
            mark = Text(symbol, style=style)
        table.add_row(
            mark, Text(record.name.value, style="bold"), _elapsed(record), Text(record.detail, overflow="fold")
        )
    header = Text(f"{state.workflow_id}  [{state.status.value}]", style="bold cyan")
    return Group(header, table)


def step_line(record: StepRecord) -> str:
    symbol = _MARK.get(record.status, ("…", ""))[0]
    return f"{symbol} {record.name.value:<11} {_elapsed(record)}  {record.detail}"


def plan_panel(plan: Plan) -> RenderableType:
    table = Table(title="Plan", show_header=False, expand=False)
    table.add_row("summary", plan.summary)
    for n, step in enumerate(plan.steps, 1):
        table.add_row(f"step {n}", f"{step.title}" + (f" — {step.detail}" if step.detail else ""))
    table.add_row("files", ", ".join(plan.files) or "-")
    table.add_row("estimate", f"{plan.estimate_hours:g} h")
    return table


def review_panel(review: SelfReview) -> RenderableType:
    verdict = "approved" if review.approve else "changes asked"
    table = Table(title=f"Self-review: {verdict}", show_header=False, expand=False)
    table.add_row("summary", review.summary)
    for f in review.findings:
        where = f"{f.path}:{f.line}" if f.path and f.line else (f.path or "-")
        table.add_row(where, f.problem + (f" — {f.suggestion}" if f.suggestion else ""))
    return table


def tasks_table(rows: list[TaskSummary]) -> RenderableType:
    table = Table("task", "status", "step", "started")
    for r in rows:
        table.add_row(r.workflow_id, r.status, r.step, r.started_at.strftime("%Y-%m-%d %H:%M") if r.started_at else "")
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
