"""`tamma demo` on the embedded default: it starts its own Temporal dev server with a SQLite
file, later commands reuse it, work survives a restart, `tamma temporal stop` ends it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tamma.runtime import pids
from tamma.runtime.embedded import port_open
from tests.ports import free_port

pytestmark = pytest.mark.slow


def test_demo_on_embedded_server_persists_and_stops(tmp_path: Path) -> None:
    port, ui = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAMMA_")}
    env.update(
        TAMMA_DATA_DIR=str(tmp_path / "data"),
        TAMMA_TEMPORAL__EMBEDDED_PORT=str(port),
        TAMMA_TEMPORAL__EMBEDDED_UI_PORT=str(ui),
        COLUMNS="200",
    )

    def tamma(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tamma", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    pid_file = tmp_path / "data" / "temporal" / "server.pid"
    try:
        demo = tamma("demo", "--dir", str(tmp_path / "pager"))
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert "replays a recorded transcript" in demo.stdout and "No LLM is called" in demo.stdout
        assert f"Temporal: embedded dev server at 127.0.0.1:{port}" in demo.stdout
        assert f"Web UI: http://127.0.0.1:{ui}/" in demo.stdout
        assert "Merge !1: Fix off-by-one in paginate()" in demo.stdout
        flat = " ".join(demo.stdout.split())
        assert "keeps running" in flat and "tamma temporal stop" in flat  # the demo says how to stop it
        assert (tmp_path / "data" / "temporal" / "tamma.db").exists()
        # the database holds every issue, plan and model answer: the user's alone
        assert (tmp_path / "data").stat().st_mode & 0o777 == 0o700
        assert (tmp_path / "data" / "temporal").stat().st_mode & 0o777 == 0o700
        for path in (tmp_path / "data" / "temporal").glob("tamma.db*"):
            assert path.stat().st_mode & 0o077 == 0, path
        first_pid = pid_file.read_text()
        for _ in range(50):  # visibility is eventually consistent
            listed = tamma("list", "--status", "merged")
            if "pager#1" in listed.stdout:
                break
        assert "pager#1" in listed.stdout and pid_file.read_text() == first_pid  # reused, not restarted
        stopped = tamma("temporal", "stop")
        assert "embedded server stopped" in stopped.stdout
        # stop returns once the server has exited, so the restart below finds its database free
        assert not port_open(port) and not pids.alive(int(first_pid))
        after_restart = tamma("list", "--status", "merged")  # starts the server again on the same file
        assert "pager#1" in after_restart.stdout, after_restart.stdout + after_restart.stderr
    finally:
        tamma("temporal", "stop")
