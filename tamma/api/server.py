"""How Tamma's HTTP servers read requests: the API server's and each worker's health server.

Bounded reads at the socket, because both face clients Tamma does not know (a forge, a browser,
a cluster's probes and anything else that can reach the port)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

MAX_HEADER_BYTES = 32 * 1024  # all headers of one request; forges send a few hundred bytes

#: a request's line and headers must arrive within this many seconds of the connection opening
#: (or of the previous response on a kept-alive one); a forge or an API client sends them at once
HEAD_TIMEOUT_S = 10.0
#: ... and its body within this many seconds of its head (a forge's 5 MB delivery takes well under
#: a second on any link a server sits on).
BODY_TIMEOUT_S = 30.0


class BoundedH11(H11Protocol):
    """uvicorn's h11 protocol with deadlines on reading a request. uvicorn times out an idle
    kept-alive connection only after a response, and any byte cancels that: a client that opens
    connections and sends its headers a byte at a time (slow-loris) held each one for ever, and
    one that declares a body and drips it held a connection *and* a handler waiting in
    `receive()`. Here a head not complete within HEAD_TIMEOUT_S, or a body not complete within
    BODY_TIMEOUT_S of its head, closes the connection (the handler's `receive()` then answers
    `http.disconnect`). Written by hand: uvicorn has no such option (its `timeout_keep_alive` is
    the idle wait between requests)."""

    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # asyncio turns Nagle off only for sockets made with proto=IPPROTO_TCP; one bound by
            # hand (`socket.socket()`, proto 0: the worker's health server, a socket handed over)
            # kept it on, and the response's head and body, written apart, met the client's
            # delayed ACK: 40 ms on every request of a kept-alive connection.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
        self._arm(HEAD_TIMEOUT_S)

    def data_received(self, data: bytes) -> None:
        before = self.conn.their_state
        super().data_received(data)
        after = self.conn.their_state
        if after is h11.SEND_BODY and before is not h11.SEND_BODY:
            self._arm(BODY_TIMEOUT_S)  # the head is in; now the body has its own deadline
        elif after is not h11.IDLE and after is not h11.SEND_BODY:
            self._disarm()  # the whole request is in (or the connection switched protocol)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm(HEAD_TIMEOUT_S)  # the next request's head gets the same deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        reading = self.conn.their_state in (h11.IDLE, h11.SEND_BODY)
        if reading and not self.transport.is_closing() and self.transport.get_protocol() is self:
            self.transport.close()


def server_options() -> dict[str, Any]:
    """uvicorn's options for Tamma's server (the CLI's and the tests'). h11, not httptools:
    httptools buffers a request's whole header block before anything can refuse it (32 MiB of
    headers cost ~48 MB per connection), while h11 stops reading at `MAX_HEADER_BYTES` (plus the
    request line) and answers 400; and the head must arrive within HEAD_TIMEOUT_S (BoundedH11)."""
    return {
        "http": BoundedH11,
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES + 8 * 1024,
        "server_header": False,
        "timeout_keep_alive": 5,
    }
