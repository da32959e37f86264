"""`tamma config ...`: where settings come from, what they are, and their schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from tamma.cli.errors import run_or_exit
from tamma.cli.term import SafeConsole as Console

if TYPE_CHECKING:
    pass

config_app = typer.Typer(no_args_is_help=True, help="Settings: where they come from, what they are, their schema.")
console = Console(highlight=False)


@config_app.command("show")
def show(
    ctx: typer.Context,
    sources: Annotated[bool, typer.Option("--sources", help="say where each value comes from")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Every effective setting (secrets masked), optionally with its source."""
    from tamma.config import explain

    rows = run_or_exit(lambda: explain(ctx.obj))
    if as_json:
        typer.echo(json.dumps([{"setting": k, "value": json.loads(v) if v != "********" else v, "source": s}
                               for k, v, s in rows], indent=2))  # fmt: skip
        return
    from rich.table import Table  # here: `tamma --help` need not load it

    table = Table(box=None, pad_edge=False)
    table.add_column("setting", style="bold")
    table.add_column("value", overflow="fold")
    if sources:
        table.add_column("source", style="dim", overflow="fold")
    for key, value, source in rows:
        table.add_row(escape(key), escape(value), *([escape(source)] if sources else []))
    console.print(table)


@config_app.command("path")
def path(ctx: typer.Context) -> None:
    """The config files in use, in the order they are layered."""
    from tamma.config import read_layers

    layers = run_or_exit(lambda: read_layers(ctx.obj))
    if not layers.files:
        console.print("no config file: defaults and TAMMA_* variables only")
    for p in layers.files:
        typer.echo(str(p.resolve()))


@config_app.command("validate")
def validate(
    ctx: typer.Context,
    file: Annotated[Path | None, typer.Argument(help="the file to check (default: the one in use)")] = None,
) -> None:
    """Check a config file as Tamma would read it (with TAMMA_* on top). Exit codes: 0 valid,
    1 invalid (with the reasons), 2 usage (a wrong option)."""
    from tamma.config import load_settings, read_layers
    from tamma.errors import ConfigError

    target = file or ctx.obj
    try:
        load_settings(target)
    except ConfigError as exc:
        Console(stderr=True, highlight=False).print(f"[red]invalid:[/] {escape(exc.message)}", soft_wrap=True)
        raise typer.Exit(1) from None
    layers = read_layers(target)
    where = ", ".join(str(p) for p in layers.files) or "defaults and TAMMA_* variables"
    console.print(f"[green]valid:[/] {escape(where)}")


@config_app.command("schema")
def schema() -> None:
    """The JSON Schema of the settings (for editors and CI checks of config files)."""
    from tamma.config import Settings

    doc = Settings.model_json_schema()
    doc["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    doc["title"] = "Tamma settings"
    typer.echo(json.dumps(doc, indent=2))
