"""The sandbox: limits, no network, no secrets."""

from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tamma.agent.sandbox import SandboxPolicy, _unshare_works, isolation_summary, run_sandboxed

needs_unshare = pytest.mark.skipif(not _unshare_works(), reason="this host cannot drop network with unshare -rn")


@pytest.fixture
def listener() -> Iterator[int]:
    """A real TCP server on 127.0.0.1 that the sandboxed code tries to reach."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
                conn.close()
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join()
    srv.close()


CONNECT = "import socket,sys; s=socket.socket(); s.settimeout(2); print('connect', s.connect_ex(('127.0.0.1', {port})))"


@needs_unshare
async def test_sandbox_refuses_network(tmp_path: Path, listener: int) -> None:
    code = CONNECT.format(port=listener)
    isolated = await run_sandboxed([sys.executable, "-c", code], tmp_path, SandboxPolicy(timeout_s=20))
    assert isolated.exit_code == 0, isolated.output
    assert "connect 0" not in isolated.output  # refused or unreachable inside the sandbox
    assert "no network (unshare -rn)" in isolated.isolation
    # Control: the same program with network allowed reaches the listener.
    allowed = await run_sandboxed([sys.executable, "-c", code], tmp_path, SandboxPolicy(timeout_s=20, network=True))
    assert "connect 0" in allowed.output


async def test_sandbox_does_not_see_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-ant-test-7f3a9c2e1d"
    monkeypatch.setenv("ANTHROPIC_API_KEY", secret)
    monkeypatch.setenv("TAMMA_LLM__ANTHROPIC_API_KEY", secret)
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_another_secret")
    code = (
        "import os; print(sorted(os.environ)); print(any('secret' in v or 'sk-ant' in v for v in os.environ.values()))"
    )
    result = await run_sandboxed([sys.executable, "-c", code], tmp_path, SandboxPolicy(timeout_s=20), [secret])
    assert result.exit_code == 0, result.output
    assert "ANTHROPIC_API_KEY" not in result.output and "GITHUB_TOKEN" not in result.output
    assert result.output.strip().endswith("False")


async def test_sandbox_enforces_wall_clock(tmp_path: Path) -> None:
    result = await run_sandboxed(
        [sys.executable, "-c", "import time; time.sleep(30)"], tmp_path, SandboxPolicy(timeout_s=0.5)
    )
    assert result.timed_out and result.exit_code != 0
    assert "wall-clock limit" in result.output


async def test_sandbox_enforces_memory_limit(tmp_path: Path) -> None:
    code = "x = bytearray(512 * 1024 * 1024); print('allocated')"
    result = await run_sandboxed([sys.executable, "-c", code], tmp_path, SandboxPolicy(timeout_s=20, memory_mb=256))
    assert result.exit_code != 0 and "allocated" not in result.output
    assert "MemoryError" in result.output


async def test_sandbox_runs_in_workspace(tmp_path: Path) -> None:
    result = await run_sandboxed([sys.executable, "-c", "import os; print(os.getcwd())"], tmp_path, SandboxPolicy())
    assert result.output.strip() == str(tmp_path)


def test_isolation_summary_says_when_network_is_allowed() -> None:
    assert "network allowed" in isolation_summary(SandboxPolicy(network=True))
