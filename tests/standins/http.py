"""A real HTTP server on 127.0.0.1 for protocol stand-ins: it records every request and
answers through a responder function. Threaded stdlib server: no framework between the SDK
under test and the bytes on the socket."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw or b"{}")


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    #: a streamed answer (server-sent events): each chunk written after its pause, then the
    #: connection closes; `body` is ignored
    stream: list[tuple[float, bytes]] | None = None


Responder = Callable[[Request], Reply]


@dataclass
class StandIn:
    url: str
    requests: list[Request]


@contextmanager
def serve(responder: Responder, host: str = "127.0.0.1", port: int = 0) -> Iterator[StandIn]:
    requests: list[Request] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            req = Request(
                self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length)
            )
            requests.append(req)
            reply = responder(req)
            if reply.delay_s:
                time.sleep(reply.delay_s)
            if reply.stream is not None:
                self._stream(reply)
                return
            raw = isinstance(reply.body, bytes)
            data = b"" if reply.status == 204 else reply.body if raw else json.dumps(reply.body).encode()
            try:
                self.send_response(reply.status)
                if not any(k.lower() == "content-type" for k in reply.headers):
                    self.send_header("content-type", "text/plain" if raw else "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)

        def _stream(self, reply: Reply) -> None:
            assert reply.stream is not None
            self.close_connection = True
            try:
                self.send_response(reply.status)
                self.send_header("content-type", "text/event-stream")
                self.send_header("cache-control", "no-cache")
                self.send_header("connection", "close")
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.flush()
                for pause, chunk in reply.stream:
                    if pause:
                        time.sleep(pause)
                    self.wfile.write(chunk)
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (an idle-timeout test)

        do_GET = do_PUT = do_PATCH = do_DELETE = do_POST

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield StandIn(f"http://{host}:{server.server_address[1]}", requests)
    finally:
        server.shutdown()
        server.server_close()


def replay(replies: list[Reply | Any], problem: Callable[[Request], Reply | None], exhausted: Reply) -> Responder:
    """A responder that refuses what `problem` refuses (as the real API would), then answers
    with `replies` in order (plain values are 200 bodies), then with `exhausted`."""
    queue = list(replies)

    def respond(req: Request) -> Reply:
        refused = problem(req)
        if refused is not None:
            return refused
        if not queue:
            return exhausted
        nxt = queue.pop(0)
        return nxt if isinstance(nxt, Reply) else Reply(200, nxt)

    return respond
