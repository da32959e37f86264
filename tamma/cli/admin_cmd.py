"""`tamma token create` and `tamma temporal stop`."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from tamma.cli.common import _run, _settings, console
from tamma.cli.errors import run_or_exit
from tamma.errors import InvalidInputError

if TYPE_CHECKING:
    from tamma.config import Settings
    from tamma.runtime.sessions import TokenPair

temporal_app = typer.Typer(no_args_is_help=True, help="The embedded Temporal server.")
token_app = typer.Typer(no_args_is_help=True, help="API tokens (JWT).")


@token_app.command("create")
def token_create(
    ctx: typer.Context,
    role: Annotated[str, typer.Option(help="viewer, operator or admin")] = "viewer",
    ttl: Annotated[str | None, typer.Option(help="lifetime: 30m, 1h (the default), 7d")] = None,
    subject: Annotated[str, typer.Option(help="who the token is for")] = "cli",
    refresh: Annotated[
        bool,
        typer.Option(
            "--refresh",
            help="open a refresh session: print JSON with an access token (api.access_token_ttl_s) and a refresh "
            "token for POST /api/v1/auth/refresh (api.refresh_token_ttl_s; each is spent when used); needs Temporal",
        ),
    ] = False,
) -> None:
    """Mint an API token from the configured key."""

    def go() -> None:
        from tamma.tokens import RANK, create_token, token_id

        if role not in RANK:
            raise InvalidInputError(f"role {role!r} must be viewer, operator or admin")
        settings = _settings(ctx)
        if refresh:
            if ttl is not None:
                raise InvalidInputError(
                    "--ttl and --refresh: a session's lifetimes are api.access_token_ttl_s, "
                    "api.refresh_token_ttl_s and api.session_max_s; drop --ttl"
                )
            pair = _run(_open_session(settings, subject, role))
            print(pair.model_dump_json())
            print(
                f"session id {pair.session_id}: POST the refresh token to /api/v1/auth/revoke, or add the id to "
                "api.revoked_tokens, to end it",
                file=sys.stderr,
            )
            return
        ttl_text = ttl or "1h"
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
        if len(ttl_text) < 2 or ttl_text[-1] not in units or not ttl_text[:-1].isdigit():
            raise InvalidInputError(f"ttl {ttl_text!r} must look like 30m, 1h or 7d")
        seconds = int(ttl_text[:-1]) * units[ttl_text[-1]]
        token = create_token(settings.api, subject, role, seconds)  # type: ignore[arg-type]
        print(token)
        # the id on stderr, so `$(tamma token create)` still captures the token alone
        print(f"token id {token_id(token)}: add it to api.revoked_tokens to refuse this token", file=sys.stderr)

    run_or_exit(go)


async def _open_session(settings: Settings, subject: str, role: str) -> TokenPair:
    from tamma.runtime.client import open_client
    from tamma.runtime.sessions import open_session

    client, _, _ = await open_client(settings)
    return await open_session(client, settings, subject, role)  # type: ignore[arg-type]


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
