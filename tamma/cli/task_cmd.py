"""The task commands: start, status, retry, list, approve, reject, cancel — each parses its
options and makes one call to TaskService."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape as esc

from tamma.cli.common import IdArg, RepoOpt, _run, _settings, _sleep, console, task_id, who
from tamma.cli.errors import run_or_exit
from tamma.errors import InvalidInputError
from tamma.status import TaskStatus  # in command signatures: typer reads them at start

if TYPE_CHECKING:
    from tamma.cli.session import Session
    from tamma.config import Settings
    from tamma.models import RepoRef, TaskOptions, TaskState
    from tamma.platforms.base import GitPlatform

tasks_app = typer.Typer()  # its commands are registered on the root app (tamma start, not tamma task start)


@tasks_app.command()
def start(
    ctx: typer.Context,
    issue: Annotated[int | None, typer.Option("--issue", help="issue number (omit it to pick one)")] = None,
    repo: RepoOpt = Path("."),
    yes: Annotated[bool, typer.Option("--yes", "-y", help="approve the plan without asking")] = False,
    rerun: Annotated[bool, typer.Option(help="start again even if the issue was already done")] = False,
    detach: Annotated[bool, typer.Option(help="start and return at once")] = False,
    transcript: Annotated[Path | None, typer.Option(help="replay this recording instead of a model")] = None,
) -> None:
    """Turn an issue into a merged branch (attaches if it is already running)."""
    code = run_or_exit(lambda: _run(_start(ctx, issue, repo, yes, rerun, detach, transcript)))
    raise typer.Exit(code)


async def _start(
    ctx: typer.Context, number: int | None, repo: Path, yes: bool, rerun: bool, detach: bool, transcript: Path | None
) -> int:
    from tamma.runtime.wiring import detect_repo, platform_factory

    settings = _settings(ctx)
    ref = detect_repo(settings, repo)
    platform = platform_factory(settings)(ref)
    if number is None:
        number = await _pick(platform, ref)
        if number is None:
            console.print("No issue chosen.")
            return 1
    issue = await platform.get_issue(number)  # fail before creating anything
    return await run_task(
        settings,
        ref,
        number,
        title=issue.title,
        yes=yes,
        rerun=rerun,
        detach=detach,
        transcript=str(transcript.resolve()) if transcript else None,
        config_file=ctx.obj,
    )


async def _pick(platform: GitPlatform, ref: RepoRef) -> int | None:
    """`tamma start` without --issue: a picker over the open issues, when a person is there."""
    from tamma.cli.picker import pick_issue

    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise InvalidInputError(
            "pass --issue N (there is no terminal to pick an issue in); `tamma issue list` lists them"
        )
    issues = await platform.open_issues()
    if not issues:
        raise InvalidInputError(f"{ref.key} has no open issue; create one (`tamma issue create TITLE`) or pass --issue")
    chosen = await pick_issue(issues, ref.key)
    return chosen.number if chosen else None


async def run_task(
    settings: Settings,
    ref: RepoRef,
    number: int,
    *,
    yes: bool = False,
    rerun: bool = False,
    detach: bool = False,
    transcript: str | None = None,
    config_file: Path | None = None,
    title: str = "",
    options: TaskOptions | None = None,
) -> int:
    from tamma.agent.sandbox import require_isolation
    from tamma.cli.session import open_session
    from tamma.models import IssueTaskInput
    from tamma.runtime.wiring import provider_description

    console.print(f"LLM: {provider_description(settings, transcript)}")
    sandbox = require_isolation(settings.agent.sandbox)  # refuse before anything starts
    async with open_session(settings, console, config_file) as session:
        _print_server(session)
        console.print(f"Sandbox: {sandbox}")
        options = options or settings.task_options(yes=yes, transcript=transcript)
        await _warn_about_drift(session)
        wid, created = await session.tasks.start(
            IssueTaskInput(repo=ref, issue_number=number, options=options), rerun, title=title
        )
        console.print(f"{'Started' if created else 'Attached to'} [bold]{esc(wid)}[/]")
        _print_ui_link(session, wid)
        if detach:
            await _ensure_worker(session)  # a detached task needs a worker that outlives this command
            console.print(f"Follow it with: tamma status {esc(wid)} --follow")
            return 0
        return await _follow_to_end(session, wid)


async def _warn_about_drift(session: Session) -> None:
    from tamma.runtime.background import running_pid

    drifted = await session.drifted_workers()
    if not drifted:
        return
    background = running_pid(session.settings.data_dir)
    how = (
        f"`tamma temporal stop` ends the background worker (pid {background}); the next command starts one "
        "with these settings"
        if background
        else "restart those workers with the new settings"
    )
    console.print(
        f"[yellow]warning:[/] {esc(', '.join(drifted))} run(s) with settings or a version other than this "
        f"shell's (started before a change, or configured differently) and may run this task: {how}"
    )


async def _follow_to_end(session: Session, wid: str) -> int:
    from tamma.cli.follow import Detached, follow
    from tamma.runtime.background import spawn_background_worker

    started = await session.start_worker()
    if started:
        console.print("Worker: in this process (no other worker is running)")
    else:
        who = (await session.external_workers()).identities()
        console.print(f"Worker: {esc(', '.join(w.split(' ')[0] for w in who) or 'external')} (already running)")
    try:
        state = await follow(session, wid, interactive=True)
    except Detached:
        await session.stop_worker()
        console.print(f"\nDetached from {esc(wid)}; the task is durable in Temporal and goes on.")
        if started:
            pid = spawn_background_worker(session.settings.data_dir, session.config_file)
            console.print(f"A background worker (pid {pid}) carries on; `tamma temporal stop` ends it.")
        console.print(f"Reattach: [bold]tamma status {esc(wid)} --follow[/]")
        return 130
    return _report(state)


async def _ensure_worker(session: Session) -> None:
    """Decisions need a worker to reach the workflow; keep one running in the background."""
    from tamma.runtime.background import spawn_background_worker

    seen = await session.external_workers()
    if seen.serving:
        console.print(f"Worker: {esc(', '.join(w.split(' ')[0] for w in seen.identities()))} (already running)")
        return
    pid = spawn_background_worker(session.settings.data_dir, session.config_file)
    console.print(f"Worker: started a background worker (pid {pid}); `tamma temporal stop` ends it")
    for _ in range(150):  # until its first heartbeat reaches the server
        if (await session.external_workers()).serving:
            return
        await _sleep(0.1)


def _report(state: TaskState) -> int:
    if state.status == TaskStatus.MERGED:
        console.print(
            f"[green]Merged[/] {esc(state.branch)} as {state.merge_sha[:10]}"
            f" ({esc(state.pull_request.url) if state.pull_request else ''})"
        )
    elif state.status == TaskStatus.PR_OPEN:
        console.print(f"[green]PR open[/]: {esc(state.pull_request.url) if state.pull_request else ''}")
    else:
        console.print(
            f"[red]{state.status.value}[/]: {esc(state.error or (state.approval.reason if state.approval else ''))}"
        )
        if state.status == TaskStatus.FAILED:  # final: every retry was spent; say what to do next
            number = state.workflow_id.rsplit("#", 1)[-1]
            console.print(
                f"[dim]This is final (no retry is scheduled). Fix the cause, then `tamma retry {esc(number)}` "
                "runs the task again.[/]"
            )
    return 0 if state.status in (TaskStatus.MERGED, TaskStatus.PR_OPEN) else 1


def _print_server(session: Session) -> None:
    kind = "embedded dev server" if session.embedded else "server"
    console.print(f"Temporal: {kind} at {session.address}")


def _ui_url(session: Session) -> str:
    from tamma.runtime.embedded import recorded_ports

    t = session.settings.temporal
    _, port = recorded_ports(session.settings.data_dir, t.embedded_port, t.embedded_ui_port)
    return f"http://127.0.0.1:{port}/namespaces/{t.namespace}/workflows"


def _print_ui_link(session: Session, wid: str) -> None:
    if session.embedded:
        console.print(f"Web UI: {_ui_url(session)}")


@tasks_app.command()
def status(
    ctx: typer.Context,
    task: IdArg,
    repo: RepoOpt = Path("."),
    follow_: Annotated[bool, typer.Option("--follow", "-f", help="watch it live (and run a worker here)")] = False,
) -> None:
    """Show a task's steps, plan and outcome."""
    from tamma.cli.render import plan_panel, review_panel, step_line, usage_table
    from tamma.cli.session import open_session

    async def go() -> int:
        settings = _settings(ctx)
        wid = task_id(task, repo, settings)
        async with open_session(settings, console, ctx.obj) as session:
            if follow_:
                return await _follow_to_end(session, wid)
            state = await session.tasks.state(wid)
            console.print(f"[bold]{esc(wid)}[/]  \\[{state.status.value}]  {esc(state.issue_title)}")
            for record in state.steps:
                console.print(step_line(record))
            if state.plan:
                console.print(plan_panel(state.plan))
            if state.self_review and state.self_review.findings:
                console.print(review_panel(state.self_review))
            if state.usage.calls:
                console.print(usage_table(state))
            if state.transcripts:
                console.print(f"Recorded exchanges: {esc(str(Path(state.transcripts[0]).parent))}")
            if state.error:
                console.print(f"[red]error:[/] {esc(state.error)}")
            if state.status == TaskStatus.PARKED:
                console.print(f"[yellow]parked:[/] {esc(state.parked_reason)}")
            if state.note:
                console.print(f"[yellow]{esc(state.note)}[/]")
            return 0

    raise typer.Exit(run_or_exit(lambda: _run(go())))


@tasks_app.command()
def retry(
    ctx: typer.Context,
    task: IdArg,
    repo: RepoOpt = Path("."),
    detach: Annotated[bool, typer.Option(help="resume or start, and return at once")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="approve the plan without asking this time")] = False,
    transcript: Annotated[
        Path | None, typer.Option("--transcript", help="replay this recording instead of the one it started with")
    ] = None,
) -> None:
    """Resume a parked task, or run a finished task that did not merge once more — with the
    options it was started with (its recording, approval policy, budget), unless told otherwise."""
    from tamma.cli.session import open_session

    async def go() -> int:
        settings = _settings(ctx)
        wid = task_id(task, repo, settings)
        async with open_session(settings, console, ctx.obj) as session:
            plan = await session.tasks.plan_retry(
                wid,
                settings.task_options(),
                yes=yes,
                transcript=str(transcript.resolve()) if transcript is not None else None,
            )
            if plan.action == "resume":
                await _ensure_worker(session)
                await session.tasks.resume(wid, by=who())
                console.print(f"Resumed [bold]{esc(wid)}[/]")
                if detach:
                    return 0
                return await _follow_to_end(session, wid)
        assert plan.input is not None
        o = plan.input.options
        return await run_task(
            settings, plan.input.repo, plan.input.issue_number, rerun=True, detach=detach, config_file=ctx.obj,
            transcript=o.transcript, options=o,
        )  # fmt: skip

    raise typer.Exit(run_or_exit(lambda: _run(go())))


@tasks_app.command("list")
def list_tasks(
    ctx: typer.Context,
    status_: Annotated[
        TaskStatus | None, typer.Option("--status", case_sensitive=False, help="only tasks in this state")
    ] = None,
    repository: Annotated[str | None, typer.Option("--repository", help="e.g. local:/path")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000, help="at most this many, newest first")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """List tasks from Temporal's visibility store (full ids, as `tamma status` takes them)."""
    from tamma.cli.render import tasks_table
    from tamma.cli.session import open_session

    async def go() -> None:
        async with open_session(_settings(ctx), console, ctx.obj) as session:
            rows = await session.tasks.list(status_.value if status_ else None, repository, limit=limit + 1)
        shown, more = rows[:limit], len(rows) > limit
        if as_json:
            typer.echo(json.dumps([r.model_dump(mode="json") for r in shown], indent=2))
            return
        console.print(tasks_table(shown))
        if more:
            console.print(f"[dim]more tasks than {limit}: tamma list --limit {limit * 2}[/]")

    run_or_exit(lambda: _run(go()))


def _act(
    ctx: typer.Context, task: str, repo: Path, act: Callable[[Session, str], Awaitable[object]], done: str
) -> None:
    """Approve, reject or cancel: each needs a worker to reach the workflow, then one call."""
    from tamma.cli.session import open_session

    async def go() -> None:
        async with open_session(_settings(ctx), console, ctx.obj) as session:
            await _ensure_worker(session)
            await act(session, task_id(task, repo, session.settings))
            console.print(done)

    run_or_exit(lambda: _run(go()))


@tasks_app.command()
def approve(ctx: typer.Context, task: IdArg, repo: RepoOpt = Path("."), reason: str = "") -> None:
    """Approve a task's plan."""
    _act(ctx, task, repo, lambda s, wid: s.tasks.approve(wid, by=who(), reason=reason), "approved")


@tasks_app.command()
def reject(
    ctx: typer.Context, task: IdArg, reason: Annotated[str, typer.Option(help="why")], repo: RepoOpt = Path(".")
) -> None:
    """Reject a task's plan."""
    _act(ctx, task, repo, lambda s, wid: s.tasks.reject(wid, by=who(), reason=reason), "rejected")


@tasks_app.command()
def cancel(ctx: typer.Context, task: IdArg, repo: RepoOpt = Path(".")) -> None:
    """Cancel a running task."""
    _act(ctx, task, repo, lambda s, wid: s.tasks.cancel(wid), "cancel requested")
