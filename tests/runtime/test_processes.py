"""Processes Tamma records by PID and the embedded server's start/stop lifecycle."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from temporalio.client import Client

from tamma.errors import TemporalUnavailable
from tamma.runtime import pids
from tamma.runtime.client import connect
from tamma.runtime.embedded import ensure_embedded_server, port_open, stop_embedded_server
from tests.ports import free_port

IGNORES_SIGTERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"
)
SLOW_TO_EXIT = (
    "import signal, sys, time\n"
    "def bye(*_):\n    time.sleep(1.0); sys.exit(0)\n"
    "signal.signal(signal.SIGTERM, bye); print('up', flush=True); time.sleep(60)"
)


def spawn(code: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "up\n"  # handlers installed
    return proc


def test_terminate_waits_for_a_slow_exit() -> None:
    proc = spawn(SLOW_TO_EXIT)
    pids.terminate(proc.pid, grace_s=10)
    assert not pids.alive(proc.pid)


def test_terminate_kills_what_ignores_sigterm_after_the_grace() -> None:
    proc = spawn(IGNORES_SIGTERM)
    started = time.monotonic()
    pids.terminate(proc.pid, grace_s=0.5)
    assert not pids.alive(proc.pid) and time.monotonic() - started >= 0.5


def test_a_recycled_pid_running_something_else_is_not_ours() -> None:
    proc = spawn(IGNORES_SIGTERM)
    try:
        assert pids.runs(proc.pid, "python") or pids.runs(proc.pid, sys.executable)
        assert not pids.runs(proc.pid, "temporal server start-dev")
    finally:
        proc.kill()
        proc.wait()
    assert not pids.alive(proc.pid)


def test_stop_leaves_a_recorded_pid_of_another_program_alone(tmp_path: Path) -> None:
    proc = spawn(IGNORES_SIGTERM)
    try:
        (tmp_path / "temporal").mkdir()
        (tmp_path / "temporal" / "server.pid").write_text(str(proc.pid))
        assert stop_embedded_server(tmp_path) is False
        assert proc.poll() is None  # not ours to end
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_embedded_server_restarts_on_its_file_right_after_stop(tmp_path: Path) -> None:
    """The port closes before the server releases its SQLite file; a start straight after a stop
    must wait for it, or the new server dies with "database is locked"."""
    port, ui = free_port(), free_port()
    try:
        for _ in range(3):
            address, started = ensure_embedded_server(tmp_path, port, ui)
            assert address == f"127.0.0.1:{port}"
            assert started
            pid = pids.read_pid(tmp_path / "temporal" / "server.pid")
            assert pid is not None and pids.runs(pid, "temporal")
            assert stop_embedded_server(tmp_path)
            assert not pids.alive(pid) and not port_open(port)
    finally:
        stop_embedded_server(tmp_path)


async def test_a_namespace_the_server_lacks_is_one_clear_error(temporal_address: str) -> None:
    with pytest.raises(TemporalUnavailable) as caught:
        await connect(temporal_address, namespace="no-such-namespace")
    assert "'no-such-namespace' is not served" in caught.value.message
    assert "TAMMA_TEMPORAL__NAMESPACE" in caught.value.message


async def test_connect_checks_the_namespace_it_is_given(temporal_address: str, client: Client) -> None:
    connected = await connect(temporal_address, namespace=client.namespace)
    assert connected.namespace == client.namespace


@pytest.mark.slow
@pytest.mark.parametrize("which", ["port", "ui_port"])
def test_a_foreign_program_on_the_port_is_never_adopted(
    tmp_path: Path, which: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Something that is not this user's embedded server listens where it would: Tamma starts its
    own on the next free pair, says so, and finds that one again next time."""
    port, ui = free_port(), free_port()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port if which == "port" else ui))
        squatter.listen()
        try:
            address, started = ensure_embedded_server(tmp_path, port, ui)
            moved = int(address.rsplit(":", 1)[1])
            assert started and moved != port
            assert "is held by a program that is not this user's embedded Temporal server" in caplog.text
            assert f"runs on {moved}" in caplog.text
            assert ensure_embedded_server(tmp_path, port, ui) == (address, False)  # its own, found again
        finally:
            stop_embedded_server(tmp_path)
