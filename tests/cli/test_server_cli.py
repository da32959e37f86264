"""`tamma server` and `tamma token create` as a user runs them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import jwt
import pytest

from tamma.config import Settings
from tests.ports import free_port

pytestmark = pytest.mark.slow
SECRET = "cli-jwt-secret-of-sufficient-length-1234"


def env_for(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAMMA_")}
    env.update(
        TAMMA_TEMPORAL__ADDRESS=settings.temporal.address or "",
        TAMMA_DATA_DIR=str(settings.data_dir),
        TAMMA_API__JWT_SECRET=SECRET,
        TAMMA_WEBHOOKS__GITHUB_SECRETS='["s1"]',
        TAMMA_CONFIG="",
    )
    return env


def test_token_create_mints_a_verifiable_token(settings: Settings) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tamma", "token", "create", "--role", "operator", "--ttl", "2h"],
        env=env_for(settings),
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    claims = jwt.decode(out.stdout.strip(), SECRET, algorithms=["HS256"])
    assert claims["role"] == "operator" and 7100 < claims["exp"] - claims["iat"] <= 7200
    # stdout holds the token alone (for `$(...)`); its id, to revoke it by, goes to stderr
    assert f"token id {claims['jti']}" in out.stderr and "api.revoked_tokens" in out.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "tamma", "token", "create", "--role", "root"],
        env=env_for(settings),
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2 and "must be viewer, operator or admin" in bad.stderr


def test_server_serves_and_stops_on_sigterm(settings: Settings) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tamma", "server", "--host", "127.0.0.1", "--port", str(port)],
        env=env_for(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                live = httpx.get(f"http://127.0.0.1:{port}/live", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, "server did not come up"
                time.sleep(0.05)
        assert live.json() == {"status": "alive"}
        health = httpx.get(f"http://127.0.0.1:{port}/health").json()
        assert health["webhooks"] == {"github": "on", "gitlab": "off (no token)"}
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "GitLab webhooks are OFF" in out  # the fail-closed startup error is said plainly
    assert '"path": "/live"' in out and SECRET not in out  # JSON access log, no secrets
