"""The long-running and one-shot services: worker, server, demo, replay, doctor."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape as esc

from tamma.cli.common import RepoOpt, _run, _settings, console
from tamma.cli.errors import run_or_exit
from tamma.errors import ConfigError
from tamma.logs import add_secrets

if TYPE_CHECKING:
    from tamma.config import Settings

from tamma.cli.task_cmd import run_task

services_app = typer.Typer()  # registered on the root app


@services_app.command()
def doctor(ctx: typer.Context, repo: RepoOpt = Path(".")) -> None:
    """What Tamma would run on a repository: its test command and why, its setup, the sandbox,
    and the tests on the default branch (the baseline a task starts from). Exit 1 when Tamma
    could not test changes to it."""
    from tamma.runtime.doctor import diagnose

    code = run_or_exit(lambda: _run(diagnose(_settings(ctx), repo, console)))
    raise typer.Exit(code)


@services_app.command()
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


@services_app.command()
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


@services_app.command()
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


@services_app.command()
def server(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="default: api.host (0.0.0.0)")] = None,
    port: Annotated[int | None, typer.Option(help="default: api.port (3000)")] = None,
) -> None:
    """Serve webhooks, the task API and /health, /metrics (FastAPI on uvicorn)."""

    def go() -> None:
        import uvicorn

        from tamma.api.app import access_log_config, create_app, lean_log_records
        from tamma.api.server import server_options

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
