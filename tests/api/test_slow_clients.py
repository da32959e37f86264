"""Bounded reads at the socket: a client that sends its request head a byte at a time
(slow-loris) used to hold its connection for ever — uvicorn times out only the idle wait after a
response, and any byte cancels that. Now the head must arrive within api.server.HEAD_TIMEOUT_S of
the connection opening (or of the previous response), and everyone else is served meanwhile."""

from __future__ import annotations

import socket
import threading
import time
from urllib.parse import urlsplit

import httpx
import pytest

from tamma.api import server as api_server
from tamma.config import Settings
from tests.api.conftest import running_api


def _drip(host: str, port: int, first: bytes, closed: dict[int, float], key: int, started: float) -> None:
    """Open a connection, send `first`, then one more byte every 0.2 s until the server closes it."""
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(first)
        sock.settimeout(0.2)
        for byte in b"X-Slow: " + b"a" * 200:
            try:
                if sock.recv(4096) == b"":
                    closed[key] = time.monotonic() - started
                    return
            except TimeoutError:
                pass
            except OSError:
                closed[key] = time.monotonic() - started
                return
            try:
                sock.send(bytes([byte]))
            except OSError:
                closed[key] = time.monotonic() - started
                return


def test_slow_request_heads_are_cut_off_and_others_are_served(
    api_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api_server, "HEAD_TIMEOUT_S", 1.0)
    with running_api(api_settings) as url:
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        closed: dict[int, float] = {}
        started = time.monotonic()
        drips = [
            threading.Thread(target=_drip, args=(host, port, b"GET /live HTTP/1.1\r\nHost: x\r\n", closed, i, started))
            for i in range(16)
        ]
        for t in drips:
            t.start()
        time.sleep(0.3)
        served = httpx.get(f"{url}/live", timeout=5)  # a normal client is not kept waiting
        assert served.status_code == 200
        for t in drips:
            t.join(20)
        # all 16 cut off near the deadline, not after the 40 s their drip would take
        assert sorted(closed) == list(range(16)) and max(closed.values()) < 5, closed
        # a kept-alive connection: the next request's head has the same deadline
        with socket.create_connection((host, port), timeout=10) as sock:
            sock.sendall(b"GET /live HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while b'"alive"' not in answer:
                answer += sock.recv(4096)
            assert b" 200 " in answer
            sock.sendall(b"GET /live HTTP/1.1\r\n")  # ... and never the rest
            sock.settimeout(5)
            assert sock.recv(4096) == b""  # closed by the server


def test_a_body_dripped_after_its_head_is_cut_off_and_a_prompt_one_is_served(
    api_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sibling door: a complete head that declares a body, then a byte every 0.2 s. Before,
    the connection and the webhook handler waiting in `receive()` were held for as long as the
    client liked (a forge's 5 MB cap at a byte per 0.2 s is 12 days)."""
    monkeypatch.setattr(api_server, "BODY_TIMEOUT_S", 1.0)
    with running_api(api_settings) as url:
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        head = (
            b"POST /webhooks/github HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"X-GitHub-Event: ping\r\nContent-Length: 4000\r\n\r\n{"
        )
        closed: dict[int, float] = {}
        started = time.monotonic()
        drips = [threading.Thread(target=_drip, args=(host, port, head, closed, i, started)) for i in range(8)]
        for t in drips:
            t.start()
        time.sleep(0.3)
        assert httpx.get(f"{url}/live", timeout=5).status_code == 200
        for t in drips:
            t.join(20)
        assert sorted(closed) == list(range(8)) and max(closed.values()) < 5, closed
        # a body that arrives at once, after a pause shorter than the deadline, is read and answered
        with socket.create_connection((host, port), timeout=10) as sock:
            sock.sendall(head.replace(b"4000", b"2")[:-1])
            time.sleep(0.5)
            sock.sendall(b"{}")
            answer = sock.recv(4096)
            assert answer.startswith(b"HTTP/1.1 ") and b" 5" not in answer.split(b"\r\n")[0], answer


def _server_side(client: socket.socket) -> socket.socket:
    """The server's end of `client`'s connection, found among this process's descriptors (the
    server runs in a thread here)."""
    import os

    mine = client.getsockname()
    for fd in os.listdir("/proc/self/fd"):
        try:
            candidate = socket.socket(fileno=os.dup(int(fd)))
        except OSError:
            continue
        try:
            if candidate.family == socket.AF_INET and candidate.getpeername() == mine:
                return candidate
        except OSError:
            pass
        candidate.close()
    raise AssertionError("the server's end of the connection was not found")


def test_responses_are_not_held_back_by_nagle_on_a_socket_bound_by_hand(api_settings: Settings) -> None:
    """The API (here) and each worker's health server serve on a socket bound with
    `socket.socket()` (proto 0), which asyncio leaves with Nagle on; the response's head and body,
    written apart, then waited for the client's delayed ACK: 44 ms per request on a kept-alive
    connection (0.5 ms without). The server's end must have TCP_NODELAY."""
    with running_api(api_settings) as url:
        parts = urlsplit(url)
        assert parts.hostname is not None and parts.port is not None
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as client:
            client.sendall(b"GET /live HTTP/1.1\r\nHost: x\r\n\r\n")
            assert client.recv(4096).startswith(b"HTTP/1.1 200")
            server_end = _server_side(client)
            with server_end:
                assert server_end.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
