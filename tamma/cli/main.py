"""`tamma`: the terminal launcher. Each command parses options and makes one call inward."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.markup import escape
from rich.markup import escape as esc

from tamma.agent.safefs import private_dir
from tamma.cli.config_cmd import config_app
from tamma.cli.errors import run_or_exit
from tamma.cli.init_cmd import init
from tamma.cli.term import SafeConsole as Console
from tamma.errors import ConfigError, InvalidInputError
from tamma.logs import add_secrets
from tamma.logs import formatter as log_formatter
from tamma.status import TaskStatus  # in command signatures: typer reads them at start

if TYPE_CHECKING:
    from tamma.cli.session import Session
    from tamma.platforms.base import GitPlatform

if TYPE_CHECKING:
    from tamma.config import Settings
    from tamma.models import RepoRef, TaskOptions, TaskState

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Tamma: issue in, merged branch out.")
issue_app = typer.Typer(no_args_is_help=True, help="Issues of a local repository.")
temporal_app = typer.Typer(no_args_is_help=True, help="The embedded Temporal server.")
token_app = typer.Typer(no_args_is_help=True, help="API tokens (JWT).")
app.add_typer(issue_app, name="issue")
app.add_typer(temporal_app, name="temporal")
app.add_typer(token_app, name="token")
app.add_typer(config_app, name="config")
app.command("init")(init)
console = Console(highlight=False)


T = TypeVar("T")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    import asyncio  # here, not at the top: 60 ms of `tamma --help` went to loading it

    return asyncio.run(coro)


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


RepoOpt = Annotated[Path, typer.Option("--repo", help="the git repository (any path inside it)")]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="settings file (.toml, .yaml, .json); TAMMA_ENV layers one on it")
]


def _settings(ctx: typer.Context) -> Settings:
    from tamma.config import load_settings

    path: Path | None = ctx.obj
    settings = load_settings(path)
    add_secrets(settings.secrets())  # never in the --debug log or the warnings file
    return settings


def _version(value: bool) -> None:
    if value:
        from tamma.version import tamma_version

        typer.echo(f"tamma {tamma_version()}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config: ConfigOpt = None,
    show_version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="write a verbose log (tracebacks included) to a file")] = False,
) -> None:
    ctx.obj = config
    _show_config_warnings()
    if ctx.invoked_subcommand not in SERVICES:
        _log_to_file(debug)  # a service logs to its own stderr, where a supervisor reads it
    if ctx.invoked_subcommand in INTERACTIVE and sys.stdout.isatty():
        from tamma.version import tamma_version

        console.print(f"[bold cyan]Tamma[/] {tamma_version()} [dim]· tamma --help · tamma config show --sources[/]")


#: commands a person watches: they open with a one-line banner (never in pipes or --json output)
INTERACTIVE = {"start", "demo", "init", "replay", "worker", "server"}
#: long-running services: their logs go to stderr as JSON lines (logging.format), not to a file
SERVICES = {"worker", "server"}


def _log_to_file(debug: bool) -> None:
    """Logs never go to the terminal, where they would tear the live view (a retried step's
    traceback): warnings go to a log file, everything with --debug, which names its file."""
    import platformdirs

    folder = Path(platformdirs.user_log_dir("tamma"))
    try:
        private_dir(folder)
    except OSError as exc:  # a read-only home (a hardened container): no log file, say so with --debug
        if debug:
            Console(stderr=True, highlight=False).print(f"[yellow]warning:[/] no log file ({esc(str(exc))})")
        return
    root = logging.getLogger()
    if debug:
        path = folder / f"debug-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
        handler: logging.Handler = logging.FileHandler(path, encoding="utf-8")
        root.setLevel(logging.DEBUG)
        Console(stderr=True, highlight=False).print(f"[dim]debug log: {esc(str(path))}[/]")
    else:
        from logging.handlers import RotatingFileHandler

        handler = RotatingFileHandler(folder / "cli.log", maxBytes=1_000_000, backupCount=3, encoding="utf-8")
        handler.setLevel(logging.WARNING)
    handler.setFormatter(log_formatter("json", None))  # the one format (tamma.logs), redacted
    root.addHandler(handler)


class _WarningLine(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        Console(stderr=True, highlight=False).print(f"[yellow]warning:[/] {escape(record.getMessage())}")


def _show_config_warnings() -> None:
    """Warnings about settings (an exposed secret file) as one yellow line each."""
    for name in ("tamma.config", "tamma.notice"):
        logger = logging.getLogger(name)
        if not any(isinstance(h, _WarningLine) for h in logger.handlers):
            logger.addHandler(_WarningLine(logging.WARNING))
            logger.propagate = False


# ---- issues ----------------------------------------------------------------------------------


@issue_app.command("create")
def issue_create(
    ctx: typer.Context,
    title: str,
    body: str = "",
    repo: RepoOpt = Path("."),
    label: Annotated[
        list[str] | None, typer.Option(help="a label (repeatable); webhooks.trigger_label makes polling pick it up")
    ] = None,
) -> None:
    """Create an issue on a local repository; prints its number."""
    from tamma.platforms.local import LocalPlatform, local_repo_ref

    def go() -> None:
        platform = LocalPlatform(local_repo_ref(repo), _settings(ctx).data_dir)
        issue = platform.create_issue(title, body, author="cli", labels=label)
        console.print(f"#{issue.number} {esc(issue.title)}")

    run_or_exit(go)


@issue_app.command("list")
def issue_list(ctx: typer.Context, repo: RepoOpt = Path(".")) -> None:
    """List the issues of a local repository."""
    from tamma.platforms.local import LocalPlatform, local_repo_ref

    def go() -> None:
        for issue in LocalPlatform(local_repo_ref(repo), _settings(ctx).data_dir).list_issues():
            console.print(f"#{issue.number:<4} {issue.state:<6} {esc(issue.title)}")

    run_or_exit(go)


@issue_app.command("show")
def issue_show(ctx: typer.Context, number: int, repo: RepoOpt = Path(".")) -> None:
    """Show an issue, Tamma's task on it (state, step, pull request) and the comments."""
    from tamma.platforms.local import LocalPlatform, local_repo_ref

    def go() -> None:
        settings = _settings(ctx)
        platform = LocalPlatform(local_repo_ref(repo), settings.data_dir)
        issue = _run(platform.get_issue(number))
        console.print(f"[bold]#{issue.number} {esc(issue.title)}[/] ({issue.state})\n{esc(issue.body)}")
        console.print(_run(_task_line(ctx, settings, platform.repo, number)))
        for c in platform.issue_comments(number):
            console.print(f"\n[cyan]{esc(c['author'])}[/]: {esc(c['body'])}")

    run_or_exit(go)


async def _task_line(ctx: typer.Context, settings: Settings, ref: RepoRef, number: int) -> str:
    """'Task: <id> [status] step — detail; PR url', or why there is none to show."""
    from tamma.cli.session import open_session
    from tamma.errors import TemporalUnavailable
    from tamma.workflows import search

    wid = search.workflow_id(ref.key, number)
    try:
        async with open_session(settings, console, ctx.obj) as session:
            if not await session.tasks.exists(wid):
                return f"\nTask: none yet — `tamma start --issue {number}` starts one"
            state = await session.tasks.state(wid)
    except TemporalUnavailable as exc:
        return f"\nTask: unknown ({esc(exc.message)})"
    line = f"\nTask: [bold]{esc(wid)}[/] \\[{state.status.value}]"
    if state.steps and not state.status.finished:
        last = state.steps[-1]
        line += f" {last.name.value}" + (f" — {esc(last.detail)}" if last.detail else "")
    if state.pull_request:
        line += f"\nPull request: {esc(state.pull_request.url)}"
    if state.error:
        line += f"\nEnded: {esc(state.error)}"
    if state.note:
        line += f"\n[yellow]{esc(state.note)}[/]"
    return line


# ---- tasks -----------------------------------------------------------------------------------


@app.command()
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
        f"[yellow]warning:[/] {esc(', '.join(drifted))} run(s) with settings other than this shell's "
        f"(started before a change, or configured differently) and may run this task: {how}"
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


def task_id(arg: str, repo: Path, settings: Settings) -> str:
    """A workflow id, or an issue number (`12`, `#12`) of the repository at `repo`."""
    from tamma.runtime.wiring import detect_repo
    from tamma.workflows import search

    if arg.startswith("tamma:"):
        return arg
    digits = arg.lstrip("#")
    if not digits.isdigit():
        raise InvalidInputError(f"{arg!r} is neither a task id (tamma:…) nor an issue number")
    return search.workflow_id(detect_repo(settings, repo).key, int(digits))


IdArg = Annotated[str, typer.Argument(help="task id, or issue number in --repo")]


@app.command()
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


@app.command()
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
                await session.tasks.resume(wid, by="cli")
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


@app.command("list")
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


@app.command()
def approve(ctx: typer.Context, task: IdArg, repo: RepoOpt = Path("."), reason: str = "") -> None:
    """Approve a task's plan."""
    _act(ctx, task, repo, lambda s, wid: s.tasks.approve(wid, by="cli", reason=reason), "approved")


@app.command()
def reject(
    ctx: typer.Context, task: IdArg, reason: Annotated[str, typer.Option(help="why")], repo: RepoOpt = Path(".")
) -> None:
    """Reject a task's plan."""
    _act(ctx, task, repo, lambda s, wid: s.tasks.reject(wid, by="cli", reason=reason), "rejected")


@app.command()
def cancel(ctx: typer.Context, task: IdArg, repo: RepoOpt = Path(".")) -> None:
    """Cancel a running task."""
    _act(ctx, task, repo, lambda s, wid: s.tasks.cancel(wid), "cancel requested")


@app.command("version")
def version_command(
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object")] = False,
) -> None:
    """Tamma's version and what it runs on: Python, the Temporal SDK and CLI, the platform."""
    from tamma.version import versions

    found = versions()
    if as_json:
        typer.echo(json.dumps(found))
        return
    for key, value in found.items():
        console.print(f"{key:13} {esc(value)}")


@app.command()
def doctor(ctx: typer.Context, repo: RepoOpt = Path(".")) -> None:
    """What Tamma would run on a repository: its test command and why, its setup, the sandbox,
    and the tests on the default branch (the baseline a task starts from). Exit 1 when Tamma
    could not test changes to it."""
    from tamma.runtime.doctor import diagnose

    code = run_or_exit(lambda: _run(diagnose(_settings(ctx), repo, console)))
    raise typer.Exit(code)


@app.command()
def worker(ctx: typer.Context) -> None:
    """Run a worker (like `python worker.py`) until SIGTERM or Ctrl-C."""
    from tamma.logs import configure
    from tamma.runtime.reload import RESTART, load_settled, reexec
    from tamma.runtime.worker import serve

    def settings() -> Settings:  # after a reload's re-exec: the content it validated, never a half-written file
        loaded = load_settled(ctx.obj)
        add_secrets(loaded.secrets())
        configure(loaded.logging.level, loaded.logging.format, loaded.secrets())  # stderr, for the supervisor
        return loaded

    ready = logging.getLogger("tamma.worker").info
    code = run_or_exit(lambda: _run(serve(settings(), ready=ready, config_file=ctx.obj)))
    if code == RESTART:
        reexec()  # its config file changed what a worker does: start again with the new settings


@app.command()
def demo(
    ctx: typer.Context,
    directory: Annotated[Path | None, typer.Option("--dir", help="where to create the sample repo")] = None,
) -> None:
    """Create a sample repo with a failing test and an issue, and run the whole loop on it."""
    import subprocess
    import tempfile

    from tamma.demo import make_demo
    from tamma.gitcmd import safe_git_env_sync
    from tamma.providers.scripted import DEMO_TRANSCRIPT
    from tamma.runtime.embedded import recorded_ports
    from tamma.runtime.wiring import provider_description

    async def go() -> int:
        settings = _settings(ctx)
        where = directory or Path(tempfile.mkdtemp(prefix="tamma-demo-")) / "pager"
        platform, issue = make_demo(where, settings.data_dir)
        console.print(f"Sample repository: {platform.path}\nIssue #{issue.number}: {esc(issue.title)}")
        transcript: str | None = None
        try:
            provider_description(settings, None)
        except ConfigError:
            transcript = str(DEMO_TRANSCRIPT)
            console.print(
                "[yellow]No model is configured for the demo: it replays a recorded transcript "
                "(scripted provider). No LLM is called.[/]"
            )
        code = await run_task(settings, platform.repo, issue.number, transcript=transcript, config_file=ctx.obj)
        log = subprocess.run(
            ["git", "-C", str(platform.path), "log", "--oneline", "--graph", "main"],
            capture_output=True,
            text=True,
            check=False,
            env=safe_git_env_sync(platform.path),
        ).stdout
        console.print(f"\ngit log main:\n{esc(log)}")
        if settings.temporal.address is None:
            t = settings.temporal
            _, ui = recorded_ports(settings.data_dir, t.embedded_port, t.embedded_ui_port)
            console.print(
                f"The embedded Temporal server keeps running (the task's history stays there): open its Web UI at "
                f"http://127.0.0.1:{ui}/namespaces/{t.namespace}/workflows; stop it with [bold]tamma temporal stop[/]."
            )
        return code

    raise typer.Exit(run_or_exit(lambda: _run(go())))


@app.command()
def replay(
    ctx: typer.Context,
    recording: Annotated[Path, typer.Argument(help="a recorded run: its folder or one transcript file")],
    issue: Annotated[int, typer.Option("--issue", help="issue number")],
    repo: RepoOpt = Path("."),
    yes: Annotated[bool, typer.Option("--yes", "-y")] = False,
) -> None:
    """Re-run an issue offline from a recording of an earlier run (no model is called)."""
    from tamma.platforms.local import LocalPlatform, local_repo_ref
    from tamma.providers.recording import compile_recording

    async def go() -> int:
        settings = _settings(ctx)
        ref = local_repo_ref(repo)
        await LocalPlatform(ref, settings.data_dir).get_issue(issue)
        target = settings.data_dir / "replays" / f"{recording.resolve().name}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        compiled = compile_recording(recording, target)
        return await run_task(settings, ref, issue, yes=yes, rerun=True, transcript=str(compiled), config_file=ctx.obj)

    raise typer.Exit(run_or_exit(lambda: _run(go())))


@app.command()
def server(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="default: api.host (0.0.0.0)")] = None,
    port: Annotated[int | None, typer.Option(help="default: api.port (3000)")] = None,
) -> None:
    """Serve webhooks, the task API and /health, /metrics (FastAPI on uvicorn)."""

    def go() -> None:
        import uvicorn

        from tamma.api.app import access_log_config, create_app, lean_log_records, server_options

        lean_log_records()
        settings = _settings(ctx)
        app_ = create_app(settings, config_path=ctx.obj)
        # uvicorn drains, then re-raises the signal that stopped it; by then the shutdown was
        # graceful, so the process should end with 0, not die by the signal.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: sys.exit(0))
        uvicorn.run(
            app_,
            host=host or settings.api.host,
            port=port or settings.api.port,
            log_config=access_log_config(),
            **server_options(),
        )

    run_or_exit(go)


@token_app.command("create")
def token_create(
    ctx: typer.Context,
    role: Annotated[str, typer.Option(help="viewer, operator or admin")] = "viewer",
    ttl: Annotated[str, typer.Option(help="lifetime: 30m, 1h, 7d")] = "1h",
    subject: Annotated[str, typer.Option(help="who the token is for")] = "cli",
) -> None:
    """Mint an API token from the configured key."""

    def go() -> None:
        from tamma.api.auth import RANK, create_token

        if role not in RANK:
            raise InvalidInputError(f"role {role!r} must be viewer, operator or admin")
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
        if len(ttl) < 2 or ttl[-1] not in units or not ttl[:-1].isdigit():
            raise InvalidInputError(f"ttl {ttl!r} must look like 30m, 1h or 7d")
        seconds = int(ttl[:-1]) * units[ttl[-1]]
        print(create_token(_settings(ctx).api, subject, role, seconds))  # type: ignore[arg-type]

    run_or_exit(go)


@temporal_app.command("stop")
def temporal_stop(ctx: typer.Context) -> None:
    """Stop the background worker and the embedded Temporal server this user's Tamma started."""
    from tamma.runtime.background import stop_background_worker
    from tamma.runtime.embedded import stop_embedded_server

    def go() -> None:
        data_dir = _settings(ctx).data_dir
        pid = stop_background_worker(data_dir)
        console.print(f"background worker (pid {pid}) stopped" if pid else "no background worker was running")
        stopped = stop_embedded_server(data_dir)
        console.print("embedded server stopped" if stopped else "no embedded server was running")

    run_or_exit(go)


def main() -> None:
    from tamma.runtime.process import exit_now

    try:
        app()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    exit_now(code)
