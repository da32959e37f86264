"""The worker's health endpoint, in process: answers from kept state, refuses bad addresses."""

from __future__ import annotations

import socket

import httpx
import pytest

from tamma.errors import ConfigError
from tamma.runtime.health import WorkerHealth, split_address
from tests.ports import free_port


@pytest.mark.parametrize("bad", ["9464", ":9464", "0.0.0.0:", "0.0.0.0:http", "0.0.0.0:70000", "0.0.0.0:0"])
def test_an_address_that_is_not_host_port_is_refused_with_the_key(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"worker.health_address .* is not host:port"):
        split_address(bad, "worker.health_address")


async def test_a_taken_port_is_a_clear_error_not_a_crash() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        health = WorkerHealth(f"127.0.0.1:{port}", "127.0.0.1:1", "q")
        with pytest.raises(ConfigError, match=r"cannot be served .*choose a free port"):
            await health.start()


async def test_phases_drive_ready_and_metrics_survive_a_dead_sdk_exporter() -> None:
    port = free_port()
    # the SDK exporter's port has nothing on it: /metrics still serves the worker's own gauges
    health = WorkerHealth(f"127.0.0.1:{port}", f"127.0.0.1:{free_port()}", "q")
    await health.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            assert (await http.get("/live")).json() == {"status": "alive", "phase": "starting"}
            health.waiting("waiting for Temporal: cannot reach Temporal at x:7233")
            ready = await http.get("/ready")
            assert ready.status_code == 503 and ready.json()["detail"].startswith("waiting for Temporal")
            health.phase, health.reachable = "polling", True  # as polling() sets it, without a client
            assert (await http.get("/ready")).status_code == 200
            metrics = await http.get("/metrics")
            assert metrics.status_code == 200 and "tamma_worker_ready 1.0" in metrics.text
            health.draining()
            assert (await http.get("/ready")).status_code == 503
            assert "tamma_worker_ready 0.0" in (await http.get("/metrics")).text
            assert (await http.get("/live")).status_code == 200  # draining is alive: no restart
    finally:
        await health.stop()


async def test_the_health_port_cuts_off_slow_request_heads_like_the_api(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cluster exposes this port to whatever reaches the pod: it used uvicorn's defaults, where a
    head sent a byte at a time held its connection for ever. It now reads requests as the API does."""
    from tamma.api import server as api_server

    monkeypatch.setattr(api_server, "HEAD_TIMEOUT_S", 1.0)
    port = free_port()
    health = WorkerHealth(f"127.0.0.1:{port}", f"127.0.0.1:{free_port()}", "q")
    await health.start()
    try:

        def slow_head() -> bytes:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(b"GET /live HTTP/1.1\r\nHost: x\r\n")  # ... and never the blank line
                sock.settimeout(8)
                return sock.recv(4096)

        import asyncio

        assert await asyncio.to_thread(slow_head) == b""  # closed by the server, well before 8 s
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            assert (await http.get("/live")).status_code == 200
            big = await http.get("/live", headers={"X-Big": "a" * (64 * 1024)})
            assert big.status_code in (400, 431)  # refused, not buffered
    finally:
        await health.stop()
