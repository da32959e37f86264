"""`tamma token create` and `tamma temporal stop`."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from tamma.cli.common import _settings, console
from tamma.cli.errors import run_or_exit
from tamma.errors import InvalidInputError

if TYPE_CHECKING:
    pass

temporal_app = typer.Typer(no_args_is_help=True, help="The embedded Temporal server.")
token_app = typer.Typer(no_args_is_help=True, help="API tokens (JWT).")


@token_app.command("create")
def token_create(
    ctx: typer.Context,
    role: Annotated[str, typer.Option(help="viewer, operator or admin")] = "viewer",
    ttl: Annotated[str, typer.Option(help="lifetime: 30m, 1h, 7d")] = "1h",
    subject: Annotated[str, typer.Option(help="who the token is for")] = "cli",
) -> None:
    """Mint an API token from the configured key."""

    def go() -> None:
        from tamma.tokens import RANK, create_token, token_id

        if role not in RANK:
            raise InvalidInputError(f"role {role!r} must be viewer, operator or admin")
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
        if len(ttl) < 2 or ttl[-1] not in units or not ttl[:-1].isdigit():
            raise InvalidInputError(f"ttl {ttl!r} must look like 30m, 1h or 7d")
        seconds = int(ttl[:-1]) * units[ttl[-1]]
        token = create_token(_settings(ctx).api, subject, role, seconds)  # type: ignore[arg-type]
        print(token)
        # the id on stderr, so `$(tamma token create)` still captures the token alone
        print(f"token id {token_id(token)}: add it to api.revoked_tokens to refuse this token", file=sys.stderr)

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
