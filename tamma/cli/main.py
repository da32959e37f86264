"""`tamma`: the terminal launcher. Each command parses options and makes one call inward; the
commands live in the *_cmd modules by what they act on (issues, tasks, services, admin, config,
init) and are gathered here."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.markup import escape as esc

from tamma.agent.safefs import private_dir
from tamma.cli.admin_cmd import temporal_app, token_app
from tamma.cli.common import ConfigOpt, console
from tamma.cli.config_cmd import config_app
from tamma.cli.init_cmd import init
from tamma.cli.issue_cmd import issue_app
from tamma.cli.service_cmd import services_app
from tamma.cli.task_cmd import tasks_app
from tamma.cli.term import SafeConsole as Console
from tamma.logs import formatter as log_formatter

if TYPE_CHECKING:
    pass

if TYPE_CHECKING:
    pass

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Tamma: issue in, merged branch out.")
app.add_typer(issue_app, name="issue")
app.add_typer(temporal_app, name="temporal")
app.add_typer(token_app, name="token")
app.add_typer(config_app, name="config")
app.command("init")(init)
# start, status, retry, list, approve, reject, cancel; worker, server, demo, replay, doctor: each
# module's commands on the root (`tamma start`, not `tamma task start`), in their own order
for _group in (tasks_app, services_app):
    for _info in _group.registered_commands:
        app.registered_commands.append(_info)


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
