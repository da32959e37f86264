"""Refresh sessions of Tamma's own tokens, through the real API on a socket and the real Temporal
dev server (the API server's own session worker answers): rotation, reuse detection, racing
refreshes, sign-out, an admin ending a session, api.revoked_tokens naming a session, expiry, and
tokens of one kind refused as the other. The player here is someone holding a copy of a token."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from tamma.config import Settings
from tamma.errors import ConfigError
from tamma.runtime.sessions import TokenPair, open_session, session_queue, workflow_id
from tamma.tokens import create_refresh_token
from tamma.workflows.session import SessionState, SessionWorkflow
from tests.api.conftest import JWT_SECRET, auth, running_api, with_sections
from tests.conftest import keep_history
from tests.workflows.test_hostile_model import decoded_history

REFRESH = "/api/v1/auth/refresh"


async def refresh(http: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    return await http.post(REFRESH, json={"refresh_token": refresh_token})


async def tasks_status(http: httpx.AsyncClient, access_token: str) -> httpx.Response:
    return await http.get("/api/v1/tasks", headers={"authorization": f"Bearer {access_token}"})


async def start_session(client: Client, settings: Settings, subject: str, **state: Any) -> tuple[str, Any]:
    """A session's workflow started directly, with state a refresh could not give it."""
    sid, now = uuid.uuid4().hex, datetime.now(UTC)
    fields = {"idle_s": 3600, "ends_at": now + timedelta(days=1), "last_refresh": now, **state}
    session = SessionState(sid=sid, subject=subject, role="viewer", **fields)
    handle = await client.start_workflow(
        SessionWorkflow.run, session, id=workflow_id(sid), task_queue=session_queue(settings)
    )
    return sid, handle


async def test_a_session_rotates_and_a_spent_refresh_token_coming_back_revokes_it_for_everyone(
    http: httpx.AsyncClient, api_settings: Settings, client: Client
) -> None:
    first = await open_session(client, api_settings, "alice", "operator")
    assert (await tasks_status(http, first.access_token)).status_code == 200
    claims = jwt.decode(first.access_token, JWT_SECRET, algorithms=["HS256"])
    assert claims["sid"] == first.session_id and claims["role"] == "operator" and claims["sub"] == "alice"
    assert claims["exp"] - claims["iat"] == api_settings.api.access_token_ttl_s == 3600

    r = await refresh(http, first.refresh_token)
    assert r.status_code == 200, r.text
    second = TokenPair.model_validate(r.json())
    assert second.session_id == first.session_id and second.refresh_token != first.refresh_token
    assert second.expires_in == 3600 and second.refresh_expires_in == 7 * 24 * 3600
    assert (await tasks_status(http, second.access_token)).status_code == 200
    third = TokenPair.model_validate((await refresh(http, second.refresh_token)).json())

    # the first refresh token comes back (the owner's old copy, or a thief's): the session ends
    reused = await refresh(http, first.refresh_token)
    assert reused.status_code == 401
    assert "already used" in reused.json()["detail"] and "session is revoked" in reused.json()["detail"]
    current = await refresh(http, third.refresh_token)
    assert current.status_code == 401 and "revoked" in current.json()["detail"], current.text

    handle = client.get_workflow_handle(workflow_id(first.session_id))
    described = await handle.query(SessionWorkflow.describe)
    assert described.revoked == "refresh token of generation 0 used again" and described.generation == 2
    history = decoded_history((await handle.fetch_history()).to_json())
    assert '"sid":"' + first.session_id in history and '"generation":2' in history  # the decoding works
    for pair in (first, second, third):  # the history holds the session's state, never a token
        assert pair.refresh_token not in history and pair.access_token not in history
    await keep_history(client, workflow_id(first.session_id), "session-reuse-revoked")


async def test_two_refreshes_racing_with_one_token_let_exactly_one_through(
    http: httpx.AsyncClient, api_settings: Settings, client: Client
) -> None:
    pair = await open_session(client, api_settings, "bob", "viewer")
    answers = await asyncio.gather(*(refresh(http, pair.refresh_token) for _ in range(6)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [200, 401, 401, 401, 401, 401], [a.text for a in answers]
    winner = TokenPair.model_validate(next(a for a in answers if a.status_code == 200).json())
    # the losers were reuse: the session is revoked, the winner's refresh token too
    assert (await refresh(http, winner.refresh_token)).status_code == 401


async def test_tokens_of_one_kind_are_refused_as_the_other_and_broken_ones_say_why(
    http: httpx.AsyncClient, api_settings: Settings, client: Client
) -> None:
    pair = await open_session(client, api_settings, "carol", "admin")
    as_bearer = await tasks_status(http, pair.refresh_token)
    assert as_bearer.status_code == 401 and "refresh token is not an access token" in as_bearer.json()["detail"]
    access_as_refresh = await refresh(http, pair.access_token)
    assert access_as_refresh.status_code == 401 and "not a refresh token" in access_as_refresh.json()["detail"]
    now = int(time.time())
    forged = jwt.encode(
        {"typ": "refresh", "sid": pair.session_id, "gen": 0, "exp": now + 600},
        "an-attackers-secret-of-enough-length-0000",
        algorithm="HS256",
    )
    r = await refresh(http, forged)
    assert r.status_code == 401 and "invalid refresh token" in r.json()["detail"]
    expired = jwt.encode(
        {"typ": "refresh", "sid": pair.session_id, "gen": 0, "exp": now - 5}, JWT_SECRET, algorithm="HS256"
    )
    r = await refresh(http, expired)
    assert r.status_code == 401 and "expired" in r.json()["detail"] and "--refresh" in r.json()["detail"]
    unknown = create_refresh_token(api_settings.api, "mallory", uuid.uuid4().hex, 0, 600)  # a session never opened
    r = await refresh(http, unknown)
    assert r.status_code == 401 and "session has ended" in r.json()["detail"]
    assert (await refresh(http, "not-a-jwt")).status_code == 401
    assert (await http.post(REFRESH, json={})).status_code == 422
    for resp in (as_bearer, access_as_refresh, r):  # no answer repeats a token
        assert pair.refresh_token not in resp.text and pair.access_token not in resp.text
    # none of it touched the real session: its refresh token still works once
    assert (await refresh(http, pair.refresh_token)).status_code == 200


async def test_sign_out_an_admin_ending_a_session_and_revoked_tokens_naming_one(
    http: httpx.AsyncClient, api_settings: Settings, client: Client, tmp_path: Path
) -> None:
    mine = await open_session(client, api_settings, "dave", "operator")
    assert (await http.post("/api/v1/auth/revoke", json={"refresh_token": mine.refresh_token})).status_code == 204
    r = await refresh(http, mine.refresh_token)
    assert r.status_code == 401 and "signed out" in r.json()["detail"]

    theirs = await open_session(client, api_settings, "erin", "operator")
    path = f"/api/v1/auth/sessions/{theirs.session_id}"
    assert (await http.delete(path, headers=auth(api_settings, "operator"))).status_code == 403
    assert (await http.delete("/api/v1/auth/sessions/..%2f..", headers=auth(api_settings, "admin"))).status_code in (
        400,
        404,
    )
    assert (await http.delete(path, headers=auth(api_settings, "admin"))).status_code == 204
    r = await refresh(http, theirs.refresh_token)
    assert r.status_code == 401 and "ended by tester" in r.json()["detail"]

    # api.revoked_tokens naming a session refuses its access tokens as well, statelessly
    listed = await open_session(client, api_settings, "frank", "viewer")
    revoked = with_sections(api_settings, api={"revoked_tokens": [listed.session_id]})
    with running_api(revoked, tmp_path / "other.toml") as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as other:
            r = await tasks_status(other, listed.access_token)
            assert r.status_code == 401 and "session was revoked" in r.json()["detail"]
            assert (await refresh(other, listed.refresh_token)).status_code == 401


async def test_a_session_idle_past_its_refresh_lifetime_ends_and_says_so(
    http: httpx.AsyncClient, api_settings: Settings, client: Client
) -> None:
    """A session whose last refresh was almost idle_s ago: its workflow ends on its own timer."""
    ago = datetime.now(UTC) - timedelta(seconds=298)
    sid, handle = await start_session(client, api_settings, "gina", idle_s=300, last_refresh=ago)
    assert (await refresh(http, "not-a-jwt")).status_code == 401  # a first /auth request starts the worker
    assert await asyncio.wait_for(handle.result(), 30) == "expired"
    r = await refresh(http, create_refresh_token(api_settings.api, "gina", sid, 0, 600))
    assert r.status_code == 401 and "session has ended" in r.json()["detail"]


async def test_a_long_session_starts_afresh_and_keeps_its_generation(
    http: httpx.AsyncClient, api_settings: Settings, client: Client
) -> None:
    sid, handle = await start_session(client, api_settings, "hal", rotations_per_run=3)
    token = create_refresh_token(api_settings.api, "hal", sid, 0, 600)
    for _ in range(7):
        r = await refresh(http, token)
        assert r.status_code == 200, r.text
        token = r.json()["refresh_token"]
    runs = [w async for w in client.list_workflows(f"WorkflowId = '{workflow_id(sid)}'")]
    assert len(runs) >= 3, "seven rotations at three per run continue as new at least twice"
    assert sum(1 for w in runs if w.status == WorkflowExecutionStatus.CONTINUED_AS_NEW) >= 2
    described = await client.get_workflow_handle(workflow_id(sid)).query(SessionWorkflow.describe)
    assert described.generation == 7
    assert handle.id == workflow_id(sid)


async def test_refresh_sessions_are_refused_where_an_identity_provider_signs_the_tokens(
    api_settings: Settings, client: Client
) -> None:
    idp = with_sections(
        api_settings, api={"jwt_algorithm": "RS256", "jwks_url": "http://127.0.0.1:9/jwks", "jwt_secret": None}
    )
    with pytest.raises(ConfigError, match="identity provider"):
        await open_session(client, idp, "ivan", "viewer")


def test_the_cli_opens_a_session_and_prints_the_pair_as_json(api_settings: Settings, tmp_path: Path) -> None:
    env = {
        "TAMMA_API__JWT_SECRET": JWT_SECRET,
        "TAMMA_TEMPORAL__ADDRESS": api_settings.temporal.address or "",
        "TAMMA_TEMPORAL__TASK_QUEUE": api_settings.temporal.task_queue,
        "TAMMA_DATA_DIR": str(tmp_path / "data"),
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
    }
    cmd = [sys.executable, "-m", "tamma", "token", "create", "--refresh", "--role", "operator", "--subject", "jo"]
    done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    pair = TokenPair.model_validate(json.loads(done.stdout))
    assert jwt.decode(pair.access_token, JWT_SECRET, algorithms=["HS256"])["role"] == "operator"
    assert f"session id {pair.session_id}" in done.stderr and pair.refresh_token not in done.stderr
    both = subprocess.run([*cmd, "--ttl", "2h"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert both.returncode == 2 and "drop --ttl" in both.stderr


async def test_a_replica_runs_a_session_worker_only_from_its_first_session_request(
    api_settings: Settings, tmp_path: Path
) -> None:
    apps: list[Any] = []
    with running_api(api_settings, tmp_path / "t.toml", started=apps.append) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            assert (await http.get("/live")).status_code == 200
            assert apps[0].state.session_worker is None
            await refresh(http, "not-a-jwt")
            assert apps[0].state.session_worker is not None and not apps[0].state.session_worker.done()


async def test_a_revoked_session_s_access_tokens_are_refused_here_at_once_and_on_every_replica_within_the_interval(
    http: httpx.AsyncClient, api_settings: Settings, client: Client, tmp_path: Path
) -> None:
    """Someone holds a copy of an access token; the owner signs out at one replica. That replica
    refuses the token from the next request, another replica within api.session_check_s — not an
    hour later when it expires. Other sessions are untouched."""
    stolen = await open_session(client, api_settings, "kim", "operator")
    bystander = await open_session(client, api_settings, "lee", "viewer")
    other_replica = with_sections(api_settings, api={"session_check_s": 1})
    with running_api(other_replica, tmp_path / "b.toml") as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as b:
            assert (await tasks_status(b, stolen.access_token)).status_code == 200  # B has looked: it stands
            assert (await tasks_status(http, stolen.access_token)).status_code == 200
            signed_out = await http.post("/api/v1/auth/revoke", json={"refresh_token": stolen.refresh_token})
            assert signed_out.status_code == 204
            here = await tasks_status(http, stolen.access_token)
            assert here.status_code == 401 and "revoked (signed out)" in here.json()["detail"], here.text
            started = time.monotonic()
            while (there := await tasks_status(b, stolen.access_token)).status_code == 200:
                assert time.monotonic() - started < 10, "replica B never learnt of the revocation"
                await asyncio.sleep(0.1)
            waited = time.monotonic() - started
            assert there.status_code == 401 and "signed out" in there.json()["detail"], there.text
            assert waited < 1 + 2, waited  # the interval (1 s), and a lookup's slack
            assert stolen.access_token not in there.text
            assert (await tasks_status(b, bystander.access_token)).status_code == 200
            assert (await tasks_status(http, bystander.access_token)).status_code == 200
    await keep_history(client, workflow_id(stolen.session_id), "session-signed-out-memo")


async def test_a_reused_refresh_token_ends_every_access_token_of_its_session(
    http: httpx.AsyncClient, api_settings: Settings, client: Client
) -> None:
    owner = await open_session(client, api_settings, "max", "operator")
    thief = TokenPair.model_validate((await refresh(http, owner.refresh_token)).json())  # the copy is used first
    assert (await tasks_status(http, thief.access_token)).status_code == 200
    assert (await refresh(http, owner.refresh_token)).status_code == 401  # the owner's refresh: reuse
    for access in (owner.access_token, thief.access_token):
        r = await tasks_status(http, access)
        assert r.status_code == 401 and "used again" in r.json()["detail"], r.text


async def test_a_watcher_is_closed_at_its_next_heartbeat_once_its_session_is_revoked(
    api_settings: Settings, client: Client, task_queue: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import urllib.parse

    import websockets

    from tamma.api import tasks as task_routes
    from tamma.providers.scripted import DEMO_TRANSCRIPT
    from tests.api.conftest import a_task_over_http

    monkeypatch.setattr(task_routes, "HEARTBEAT_S", 0.5)
    settings = with_sections(
        api_settings,
        approval={"auto_approve": False},
        llm={"transcript": str(DEMO_TRANSCRIPT)},
        api={"session_check_s": 0},
    )
    async with a_task_over_http(settings, client, task_queue, tmp_path) as (url, http, wid):
        q = urllib.parse.quote(wid, safe="")
        pair = await open_session(client, settings, "nia", "viewer")
        headers = {"authorization": f"Bearer {pair.access_token}"}
        async with websockets.connect(
            url.replace("http://", "ws://") + f"/api/v1/tasks/{q}/events", additional_headers=headers
        ) as ws:
            await asyncio.wait_for(ws.recv(), 30)  # watching: a step or a ping
            assert (await http.post("/api/v1/auth/revoke", json={"refresh_token": pair.refresh_token})).is_success
            with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
                async with asyncio.timeout(20):  # pings every 0.5 s would go on for ever otherwise
                    while True:
                        await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        assert "signed out" in closed.value.rcvd.reason
        # SSE the same: the stream ends at its next heartbeat
        again = await open_session(client, settings, "nia", "viewer")
        stream = {"authorization": f"Bearer {again.access_token}"}
        async with http.stream("GET", f"/api/v1/tasks/{q}/logs", headers=stream) as sse:
            assert sse.status_code == 200
            await http.post("/api/v1/auth/revoke", json={"refresh_token": again.refresh_token})
            body = await asyncio.wait_for(sse.aread(), 15)  # ends: the read returns
        assert b"event: end" not in body  # closed for the revocation, not because the task ended
        refused = await http.get(f"/api/v1/tasks/{q}/logs", headers=stream)
        assert refused.status_code == 401


async def test_while_temporal_cannot_be_asked_the_last_answer_stands_and_nothing_fails(
    api_settings: Settings,
) -> None:
    from tamma.errors import AuthError
    from tamma.runtime.sessions import SessionCheck

    unreachable = await Client.connect("127.0.0.1:9", lazy=True)
    check = SessionCheck(unreachable)
    every_time = with_sections(api_settings, api={"session_check_s": 0})
    await check.ensure(every_time, "a" * 32)  # never looked up, cannot be: let through (signature checked)
    check.revoked("b" * 32, "signed out")
    with pytest.raises(AuthError, match="signed out"):  # a revocation is remembered for good
        await check.ensure(every_time, "b" * 32)
