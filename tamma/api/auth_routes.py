"""/api/v1/auth: refresh sessions of Tamma's own tokens (tamma.runtime.sessions).

A refresh token is its own proof: POST it to /auth/refresh for the next pair (the one sent is
spent: sending it again revokes the session), or to /auth/revoke to end the session (sign-out).
An admin ends anyone's session by its id. Under api.jwks_url these answer 400: the identity
provider refreshes its own tokens."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from temporalio.client import Client

from tamma.api.auth import Admin
from tamma.config import Settings
from tamma.errors import InvalidInputError, TemporalUnavailable
from tamma.runtime import sessions
from tamma.tokens import read_refresh_token

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


class RefreshRequest(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=8192)


def _serve_sessions(state: Any) -> None:
    """This replica's share of the session workers, from its first session request on (a server
    nobody refreshes at carries none)."""
    if state.settings.api.jwks_url is None and getattr(state, "session_worker", False) is None:
        state.session_worker = asyncio.create_task(state.session_worker_factory())


def _client(request: Request) -> Client:
    """The Temporal client a session update goes through, once the session worker runs here."""
    state = request.app.state
    probe = getattr(state, "probe", None)
    if probe is not None and probe.reachable is False:
        raise TemporalUnavailable("Temporal is unreachable (the health probe's last look); try again shortly")
    _serve_sessions(state)
    client: Client = state.client
    return client


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings  # the reloaded ones: api.revoked_tokens applies at once
    return settings


@router.post(
    "/refresh",
    response_model=sessions.TokenPair,
    summary="Trade a refresh token for a new access token and refresh token (the one sent is spent)",
)
async def refresh(body: RefreshRequest, request: Request) -> sessions.TokenPair:
    return await sessions.refresh(
        _client(request), _settings(request), body.refresh_token.strip(), request.app.state.session_check
    )


@router.post("/revoke", status_code=204, summary="End the session a refresh token belongs to (sign out)")
async def revoke(body: RefreshRequest, request: Request) -> None:
    settings = _settings(request)
    sid, _ = read_refresh_token(settings.api, body.refresh_token.strip())
    await sessions.revoke(_client(request), settings, sid, "signed out", request.app.state.session_check)


@router.delete("/sessions/{session_id}", status_code=204, summary="End a session by its id (admin)")
async def end_session(session_id: str, request: Request, who: Admin) -> None:
    if not (0 < len(session_id) <= 64 and session_id.isalnum()):
        raise InvalidInputError("a session id is the hex id `tamma token create --refresh` printed")
    reason = f"ended by {who.subject or 'an admin'}"
    await sessions.revoke(_client(request), _settings(request), session_id, reason, request.app.state.session_check)
