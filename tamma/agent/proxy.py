"""The egress proxy for the repository's setup step: HTTP CONNECT and plain HTTP, allowlisted hosts only.

The sandbox has no network namespace route out; its only way out is a Unix socket bound into it,
which leads here. A small forwarder inside the sandbox (``sandbox_forward.py``) offers that socket
as ``127.0.0.1:<port>`` so package managers can use an ordinary ``HTTPS_PROXY``. Name resolution
happens here, outside, so sandboxed code cannot use DNS as a channel either.

Written by hand because it is small and has to be exactly this: no maintained Python proxy
listens on a Unix socket inside an existing asyncio loop with a host allowlist (proxy.py,
mitmproxy are servers with their own process model and TLS interception we do not want).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from fnmatch import fnmatch
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import proxy_bypass

log = logging.getLogger(__name__)

_MAX_HEAD = 16 * 1024


class EgressProxy:
    """Serve on `socket_path`; `allowed`/`refused` list the hosts asked for, in order."""

    def __init__(self, socket_path: Path, allow: list[str], upstream: str | None = None) -> None:
        self.socket_path = socket_path
        self.allow = [a.lower() for a in allow]
        self.upstream = upstream if upstream is not None else _upstream_from_env()
        self.allowed: list[str] = []
        self.refused: list[str] = []
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def permits(self, host: str, port: int = 443) -> bool:
        """An entry `host` (or `*.domain`) allows ports 80 and 443; `host:port` allows that port
        alone (a private registry on 8081, say)."""
        host = host.lower().rstrip(".")
        for entry in self.allow:
            name, sep, named_port = entry.rpartition(":")
            if sep and named_port.isdigit():
                if int(named_port) != port:
                    continue
            else:
                name = entry
                if port not in (80, 443):
                    continue
            if host == name or (name.startswith("*.") and fnmatch(host, name)):
                return True
        return False

    async def __aenter__(self) -> EgressProxy:
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.socket_path), limit=_MAX_HEAD)
        os.chmod(self.socket_path, 0o666)  # the sandbox's user is not ours
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._handle(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        method, target, version = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
        if method.upper() == "CONNECT":
            host, _, port = target.rpartition(":")
            host, port_n, rest = host.strip("[]"), int(port or 443), b""
        else:
            url = urlsplit(target)
            if url.scheme != "http" or not url.hostname:
                await _deny(writer, 400, "only absolute http:// URLs or CONNECT are proxied")
                return
            host, port_n = url.hostname, url.port or 80
            origin = (url.path or "/") + (f"?{url.query}" if url.query else "")
            rest = head.replace(target.encode("latin-1"), origin.encode("latin-1"), 1)
        if not self.permits(host, port_n):
            self.refused.append(f"{host}:{port_n}")
            log.warning("sandbox egress refused: %s:%s", host, port_n)
            await _deny(writer, 403, f"tamma: {host}:{port_n} is not in agent.setup_allow_hosts")
            return
        self.allowed.append(f"{host}:{port_n}")
        up_reader, up_writer = await self._connect(host, port_n)
        if method.upper() == "CONNECT":
            writer.write(f"{version.strip()} 200 Connection established\r\n\r\n".encode())
        else:
            up_writer.write(rest)
        await writer.drain()
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    async def _connect(self, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        # NO_PROXY (the worker's): a registry inside the company network is reached directly,
        # as every other client on the host reaches it
        if not self.upstream or proxy_bypass(host):
            return await asyncio.wait_for(asyncio.open_connection(host, port), 30)
        up = urlsplit(self.upstream)
        r, w = await asyncio.wait_for(asyncio.open_connection(up.hostname, up.port or 3128), 30)
        w.write(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        status = (await r.readuntil(b"\r\n\r\n")).split(b" ", 2)
        if len(status) < 2 or status[1] != b"200":
            raise OSError(f"upstream proxy refused {host}:{port}")
        return r, w


def _upstream_from_env() -> str | None:
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        if os.environ.get(var):
            return os.environ[var]
    return None


async def _deny(writer: asyncio.StreamWriter, status: int, text: str) -> None:
    body = (text + "\n").encode()
    reason = "Forbidden" if status == 403 else "Bad Request"
    writer.write(
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n".encode()
        + body
    )
    await writer.drain()


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while chunk := await src.read(65536):
            dst.write(chunk)
            await dst.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            if dst.can_write_eof():
                dst.write_eof()
