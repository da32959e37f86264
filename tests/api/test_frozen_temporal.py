"""A Temporal that is frozen (SIGSTOP: it keeps its port, answers nothing) is not "reachable":
/health said so from its cache while the server hung. The probe's RPCs have a deadline, so
/health turns to "unreachable" within a few seconds, the task API answers 503 at once, and both
recover when the server does."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from tamma.config import Settings
from tamma.runtime.embedded import search_attribute_flags, temporal_binary
from tests.api.conftest import auth, running_api, with_sections
from tests.conftest import eventually
from tests.ports import free_port


@contextlib.contextmanager
def own_temporal(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A dev server of this test's own (the session's is shared: it must not be frozen)."""
    port = free_port()
    argv = [str(temporal_binary()), "server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", str(port)]
    argv += ["--db-filename", str(tmp_path / "t.db"), "--log-level", "error", *search_attribute_flags()]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.3):
                break
            assert time.monotonic() < deadline and proc.poll() is None, "the dev server did not start"
            time.sleep(0.1)
        yield proc, f"127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
        proc.wait(timeout=30)


async def test_a_frozen_temporal_is_unreachable_within_seconds_and_recovers(
    api_settings: Settings, tmp_path: Path
) -> None:
    with own_temporal(tmp_path) as (temporal, address):
        s = with_sections(api_settings, temporal={"address": address})
        with running_api(s, tmp_path / "t.toml") as url:
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:

                async def health() -> dict[str, Any]:
                    body: dict[str, Any] = (await http.get("/health")).json()
                    return body

                await eventually(health, lambda h: h["temporal"] == "reachable", timeout_s=20)
                os.kill(temporal.pid, signal.SIGSTOP)  # holds its socket, answers nothing
                frozen_at = time.monotonic()
                hung = await eventually(health, lambda h: h["temporal"] != "reachable", timeout_s=10)
                took = time.monotonic() - frozen_at
                print(f"\n/health said Temporal was unreachable {took:.1f} s after it froze")
                assert hung["status"] != "ok" and "polling" not in hung["workers"]
                started = time.monotonic()
                listed = await http.get("/api/v1/tasks", headers=auth(s, "viewer"))
                assert listed.status_code == 503 and time.monotonic() - started < 2, listed.text
                os.kill(temporal.pid, signal.SIGCONT)
                await eventually(health, lambda h: h["temporal"] == "reachable", timeout_s=20)
                await asyncio.sleep(0)
