"""`tamma init`: a wizard that writes a valid, private (0600) config file.

Every answer has a flag, so scripts run it with `--non-interactive`. Secrets can be written as
references to environment variables (`env:NAME`, the default) instead of values, so the file
itself holds none.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.prompt import Confirm, Prompt

from tamma.cli.term import SafeConsole as Console
from tamma.errors import ConfigError

console = Console(highlight=False)


if TYPE_CHECKING:
    pass


def init(
    path: Annotated[Path | None, typer.Option("--path", help="where to write (default: ./tamma.toml)")] = None,
    platform: Annotated[str | None, typer.Option("--platform", help="local, github or gitlab")] = None,
    token: Annotated[str | None, typer.Option("--token", help="GitHub/GitLab token, or env:NAME")] = None,
    base_url: Annotated[str | None, typer.Option("--base-url", help="GitHub Enterprise / self-hosted GitLab")] = None,
    provider: Annotated[str | None, typer.Option("--provider", help="anthropic, openai or none")] = None,
    api_key: Annotated[str | None, typer.Option("--api-key", help="the model's key, or env:NAME")] = None,
    model_url: Annotated[str | None, typer.Option("--model-url", help="OpenAI-compatible server URL")] = None,
    auto_approve: Annotated[bool | None, typer.Option("--auto-approve/--ask-approval")] = None,
    webhook_secret: Annotated[
        str | None, typer.Option("--webhook-secret", help="'generate', a value, env:NAME, or 'none'")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing file")] = False,
    non_interactive: Annotated[bool, typer.Option("--non-interactive", help="no prompts: flags and defaults")] = False,
) -> None:
    """Write a config file by answering a few questions (or from flags with --non-interactive)."""
    ask = _Asker(non_interactive)
    console.print("[bold]Tamma setup[/]: a few questions; Enter takes the default.")
    target = path or Path(ask.text("Write the config to", str(Path("tamma.toml")), None))
    if target.exists() and not force:
        if non_interactive:
            console.print(f"[red]error:[/] {escape(str(target))} exists; pass --force to overwrite it")
            raise typer.Exit(2)
        if not ask.confirm(f"{target} exists. Overwrite it?", False, None):
            console.print(f"Left {escape(str(target))} as it was; nothing written.")
            raise typer.Exit(0)
    doc: dict[str, Any] = {}
    kind = ask.choice("Where are your issues", ["local", "github", "gitlab"], "local", platform)
    if kind in ("github", "gitlab"):
        name = f"{kind.upper()}_TOKEN"
        value = ask.text(
            f"{kind} token (a value, or env:NAME to read it from the environment)", f"env:{name}", token, secret=True
        )
        section: dict[str, Any] = {"token": value}
        url = base_url or (
            None if non_interactive else _optional(ask.text("API base URL (Enter: the public one)", "", None))
        )
        if url:
            section["base_url"] = url
        doc[kind] = section
    model = ask.choice("Which model provider", ["anthropic", "openai", "none"], "anthropic", provider)
    if model == "anthropic":
        key = ask.text("Anthropic API key (a value, or env:NAME)", "env:ANTHROPIC_API_KEY", api_key, secret=True)
        doc["llm"] = {"provider": "anthropic", "anthropic_api_key": key}
    elif model == "openai":
        server = ask.text("OpenAI-compatible server URL", "http://127.0.0.1:11434/v1", model_url)
        llm: dict[str, Any] = {"provider": "openai", "openai_base_url": server}
        key = ask.text("Its API key (Enter: none)", "", api_key, secret=True)
        if key:
            llm["openai_api_key"] = key
        doc["llm"] = llm
    approve = ask.confirm("Approve low-risk plans automatically", True, auto_approve)
    doc["approval"] = {"auto_approve": approve}
    if kind in ("github", "gitlab"):
        secret = ask.text("Webhook secret ('generate', a value, env:NAME, or 'none')", "generate", webhook_secret)
        if secret == "generate":
            import secrets  # here, as tomli_w below: `tamma --help` need not load them

            secret = secrets.token_hex(32)
            console.print("A webhook secret was generated; give the forge the value in the file.")
        if secret and secret != "none":
            doc["webhooks"] = {"github_secrets" if kind == "github" else "gitlab_tokens": [secret]}
    _check(doc)
    _write(target, doc)
    console.print(f"[green]Wrote[/] {escape(str(target))} (readable by you only). Check it: tamma config validate")
    missing = sorted({v[4:] for v in _leaves(doc) if isinstance(v, str) and v.startswith("env:")} - set(os.environ))
    if missing:
        console.print(f"[yellow]warning:[/] set {', '.join(missing)} in the environment before running Tamma")


class _Asker:
    def __init__(self, non_interactive: bool) -> None:
        self.non_interactive = non_interactive

    def text(self, question: str, default: str, given: str | None, secret: bool = False) -> str:
        """`secret`: what is typed is not echoed (a token on screen is a token in a recording)."""
        if given is not None:
            return given
        if self.non_interactive:
            return default
        if secret:
            keep = f"Enter: {escape(default)}; " if default else ""
            hint = f" [dim]({keep}typing is hidden)[/]"
            typed = Prompt.ask(question + hint, console=console, password=True, default="", show_default=False)
            return str(typed or default)
        return str(Prompt.ask(question, default=default or None, console=console) or "")

    def choice(self, question: str, choices: list[str], default: str, given: str | None) -> str:
        if given is not None:
            if given not in choices:
                raise typer.BadParameter(f"{given!r} is not one of {', '.join(choices)}")
            return given
        if self.non_interactive:
            return default
        return str(Prompt.ask(question, choices=choices, default=default, console=console))

    def confirm(self, question: str, default: bool, given: bool | None) -> bool:
        if given is not None:
            return given
        if self.non_interactive:
            return default
        return bool(Confirm.ask(question, default=default, console=console))


def _optional(value: str) -> str | None:
    return value or None


def _leaves(doc: Any) -> list[Any]:
    if isinstance(doc, dict):
        return [leaf for v in doc.values() for leaf in _leaves(v)]
    if isinstance(doc, list):
        return [leaf for v in doc for leaf in _leaves(v)]
    return [doc]


def _check(doc: dict[str, Any]) -> None:
    """Validate what will be written; references are checked for form, not resolved here (the
    variable may be set only where Tamma runs)."""
    from tamma.config import Settings
    from tamma.config.secrets import is_reference

    def stand_in(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: stand_in(v) for k, v in value.items()}
        if isinstance(value, list):
            return [stand_in(v) for v in value]
        return "x" * 32 if is_reference(value) else value

    try:
        Settings.model_validate(stand_in(doc))
    except ValueError as exc:
        raise ConfigError(f"the answers do not make a valid config: {exc}") from None


def _write(target: Path, doc: dict[str, Any]) -> None:
    import tomli_w

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # private from the first byte
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("# Written by `tamma init`. Settings reference: `tamma config schema`.\n")
        fh.write(tomli_w.dumps(doc))
    os.replace(tmp, target)
