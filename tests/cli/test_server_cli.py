"""`tamma server` and `tamma token create` as a user runs them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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


def _inotify_watches(pid: int) -> int:
    """How many inotify watches the process holds (each `inotify wd:` line of its fds' info)."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                count += sum(1 for line in info if line.startswith("inotify wd:"))
        except OSError:
            continue
    return count


def test_the_server_watches_its_config_files_not_the_tree_it_starts_in(settings: Settings, tmp_path: Path) -> None:
    """Started in a folder of 20,000 subfolders (a large monorepo), the server watched the working
    directory recursively for a `tamma.toml` to appear: start-up and inotify watches grew with the
    tree (minutes, or "too many watches"). It watches only the config files' own folders."""
    big = tmp_path / "monorepo"
    for i in range(200):
        for j in range(100):
            (big / f"d{i}" / f"e{j}").mkdir(parents=True)
    port = free_port()
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tamma", "server", "--host", "127.0.0.1", "--port", str(port)],
        env=env_for(settings),
        cwd=big,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/live", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, "server did not come up"
                time.sleep(0.05)
        answered = time.monotonic() - started
        time.sleep(1)  # the watcher starts beside the server
        watches = _inotify_watches(proc.pid)
        print(
            f"\n/live answered {answered:.2f} s after the start in a tree of 20,000 folders; {watches} inotify watches"
        )
        assert 1 <= watches <= 10, f"{watches} inotify watches"  # the config folders, not the tree
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
