"""What every command module of the CLI shares: the console, settings, options, and the small
helpers that keep `tamma --help` from loading anything slow."""

from __future__ import annotations

from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from tamma.cli.term import SafeConsole as Console
from tamma.errors import InvalidInputError
from tamma.logs import add_secrets

if TYPE_CHECKING:
    from tamma.config import Settings

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


def who() -> str:
    """The person at this terminal, as decisions record them: `cli:<OS user>` (`cli` alone when
    the system cannot say)."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name and no passwd entry (a bare container)
        return "cli"
