"""`tamma issue ...`: the issues of a local repository, and Tamma's task on each."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape as esc

from tamma.cli.common import RepoOpt, _run, _settings, console
from tamma.cli.errors import run_or_exit

if TYPE_CHECKING:
    from tamma.config import Settings
    from tamma.models import RepoRef

issue_app = typer.Typer(no_args_is_help=True, help="Issues of a local repository.")


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
