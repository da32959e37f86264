"""Refresh sessions for Tamma's own tokens: an access token (api.access_token_ttl_s, an hour) and
a refresh token (api.refresh_token_ttl_s, a week) that buys the next pair once. The state that
makes rotation safe lives in a SessionWorkflow (tamma.workflows.session), so any API replica can
answer any refresh; the API servers run the worker for it (`session_worker`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

from tamma.config import Settings
from tamma.errors import AuthError, ConfigError, TemporalUnavailable
from tamma.tokens import NEW_SESSION, Role, create_refresh_token, create_token, read_refresh_token
from tamma.workflows.session import ENDED, REUSED, REVOKED, REVOKED_MEMO, SessionState, SessionWorkflow

log = logging.getLogger(__name__)
#: a refresh waits this long for a session worker; a replica's own worker normally answers in ms
UPDATE_TIMEOUT_S = 10.0
_TIMEOUT = timedelta(seconds=UPDATE_TIMEOUT_S)


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "Bearer"
    expires_in: int  # seconds, the access token's
    refresh_expires_in: int
    session_id: str


def session_queue(settings: Settings) -> str:
    return f"{settings.temporal.task_queue}-sessions"


def workflow_id(sid: str) -> str:
    return f"tamma-session-{sid}"


def _pair(settings: Settings, sid: str, subject: str, role: str, generation: int) -> TokenPair:
    api = settings.api
    return TokenPair(
        access_token=create_token(api, subject, role, api.access_token_ttl_s, session=sid),  # type: ignore[arg-type]
        refresh_token=create_refresh_token(api, subject, sid, generation, api.refresh_token_ttl_s),
        expires_in=api.access_token_ttl_s,
        refresh_expires_in=api.refresh_token_ttl_s,
        session_id=sid,
    )


async def open_session(client: Client, settings: Settings, subject: str, role: Role) -> TokenPair:
    """A new session (`tamma token create --refresh`): its workflow, then its first pair."""
    api = settings.api
    if api.jwks_url is not None:
        raise ConfigError(
            "api.jwks_url is set: the API accepts the identity provider's tokens only, so refresh sessions are "
            "the provider's; unset it to use Tamma's own"
        )
    sid = uuid.uuid4().hex
    started = datetime.now(UTC)
    state = SessionState(
        sid=sid,
        subject=subject,
        role=role,
        idle_s=api.refresh_token_ttl_s,
        ends_at=started + timedelta(seconds=api.session_max_s),
        last_refresh=started,
    )
    pair = _pair(settings, sid, subject, role, 0)  # minted first: a key error starts no workflow
    await client.start_workflow(
        SessionWorkflow.run,
        state,
        id=workflow_id(sid),
        task_queue=session_queue(settings),
        execution_timeout=timedelta(seconds=api.session_max_s + 3600),
    )
    return pair


def _refusal(exc: BaseException) -> AuthError | None:
    cause = exc.cause if isinstance(exc, WorkflowUpdateFailedError) else None
    if isinstance(cause, ApplicationError):
        if cause.type == REUSED:
            return AuthError(
                "this refresh token was already used, so the session is revoked (a copy of it is in other "
                f"hands?); {NEW_SESSION}"
            )
        if cause.type in (REVOKED, ENDED):
            return AuthError(f"{cause.message}; {NEW_SESSION}")
    if isinstance(exc, RPCError) and exc.status == RPCStatusCode.NOT_FOUND:
        return AuthError(f"the session has ended (revoked or expired); {NEW_SESSION}")
    return None


@contextlib.asynccontextmanager
async def _answered(what: str) -> AsyncIterator[None]:
    """A session update's failures as the API's answers: refused (401) or not now (503)."""
    try:
        yield
    except (WorkflowUpdateFailedError, RPCError) as exc:
        refusal = _refusal(exc)
        if refusal is not None:
            raise refusal from None
        if isinstance(exc, RPCError) and exc.status in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED):
            raise TemporalUnavailable(
                f"no session worker answered the {what} within {UPDATE_TIMEOUT_S:.0f}s (the API servers run it); "
                "try again"
            ) from None
        raise


async def refresh(
    client: Client, settings: Settings, refresh_token: str, check: SessionCheck | None = None
) -> TokenPair:
    """The next pair for a refresh token of the session's current generation. An older one
    revokes the session; a session listed in api.revoked_tokens is refused before Temporal."""
    sid, generation = read_refresh_token(settings.api, refresh_token)
    if sid in settings.api.revoked_tokens:
        raise AuthError(f"the session was revoked (api.revoked_tokens); {NEW_SESSION}")
    handle = client.get_workflow_handle(workflow_id(sid))
    try:
        async with _answered("refresh"):
            rotated = await handle.execute_update(SessionWorkflow.rotate, generation, rpc_timeout=_TIMEOUT)
    except AuthError:
        if check is not None:  # reused, revoked or ended: the next request looks the session up
            check.forget(sid)
        raise
    return _pair(settings, sid, rotated.subject, rotated.role, rotated.generation)


async def revoke(client: Client, settings: Settings, sid: str, reason: str, check: SessionCheck | None = None) -> None:
    handle = client.get_workflow_handle(workflow_id(sid))
    with contextlib.suppress(AuthError):  # already ended: revoked is what was asked
        async with _answered("revocation"):
            await handle.execute_update(SessionWorkflow.revoke, reason, rpc_timeout=_TIMEOUT)
    if check is not None:
        check.revoked(sid, reason)  # this replica refuses its access tokens from now on


class SessionCheck:
    """Whether the session an access token came from still stands, so revoking a session (a reused
    refresh token, a sign-out, an admin, api.revoked_tokens) refuses its access tokens within
    api.session_check_s, not when they expire an hour later.

    Each replica describes the session's workflow (a read Temporal answers itself, no worker
    needed) at most once per api.session_check_s per session and remembers a revocation for good;
    what this replica revoked itself is refused at once. While Temporal cannot be asked, the last
    answer stands (a token never looked up is let through: its signature and expiry were checked,
    and the API cannot act without Temporal anyway) — the log says so."""

    #: sessions remembered per replica: each entry came from a token with a valid signature, the
    #: bound only keeps a long-running server's memory flat
    LIMIT = 10_000

    def __init__(self, client: Client) -> None:
        self._client = client
        self._seen: OrderedDict[str, tuple[float, str]] = OrderedDict()  # sid -> (looked at, why revoked or "")

    def revoked(self, sid: str, reason: str) -> None:
        self._remember(sid, reason)

    def forget(self, sid: str) -> None:
        """Look the session up on its next token (a refresh of it was just refused)."""
        seen = self._seen.get(sid)
        if seen is not None and not seen[1]:
            del self._seen[sid]

    def _remember(self, sid: str, reason: str) -> None:
        self._seen[sid] = (time.monotonic(), reason)
        self._seen.move_to_end(sid)
        while len(self._seen) > self.LIMIT:
            self._seen.popitem(last=False)

    async def ensure(self, settings: Settings, sid: str) -> None:
        seen = self._seen.get(sid)
        if seen is not None and (seen[1] or time.monotonic() - seen[0] < settings.api.session_check_s):
            if seen[1]:
                raise AuthError(f"the token's session was revoked ({seen[1]}); {NEW_SESSION}")
            return
        reason = await self._look(sid)
        if reason is None:  # not known now: the last answer stands, for another interval
            if seen is not None:
                self._remember(sid, seen[1])
            return
        self._remember(sid, reason)
        if reason:
            raise AuthError(f"the token's session was revoked ({reason}); {NEW_SESSION}")

    async def _look(self, sid: str) -> str | None:
        """Why the session was revoked, "" while it stands, None when Temporal did not say."""
        try:
            described = await self._client.get_workflow_handle(workflow_id(sid)).describe(
                rpc_timeout=timedelta(seconds=2)
            )
            revoked = await described.memo_value(REVOKED_MEMO, "")
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return "it has ended"
            log.warning("cannot look up session %s (%s); its tokens are checked again shortly", sid, exc.message)
            return None
        except Exception as exc:  # a lazy client's first connect failing, say: not an answer either
            log.warning("cannot look up session %s (%s); its tokens are checked again shortly", sid, exc)
            return None
        if revoked:
            return str(revoked)
        if described.status not in (WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.CONTINUED_AS_NEW):
            return "it has ended"
        return ""


def session_worker(client: Client, settings: Settings) -> Worker:
    return Worker(client, task_queue=session_queue(settings), workflows=[SessionWorkflow])


async def run_session_worker(
    connect: Callable[[], Awaitable[Client]], settings: Settings, retry_s: float = 5.0
) -> None:
    """The API server's session worker: connected when Temporal answers (the server's own client
    is lazy and cannot run a worker), restarted if it stops; cancelled with the server."""
    while True:
        try:
            client = await connect()
            await session_worker(client, settings).run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Temporal down, a lost connection: try again
            log.warning("the session worker stopped (%s); starting it again in %.0fs", exc, retry_s)
        await asyncio.sleep(retry_s)
