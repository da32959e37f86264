"""A worker's own HTTP endpoint (`worker.health_address`): /live, /ready, /health and /metrics,
for Kubernetes probes, compose healthchecks and Prometheus.

Every answer comes from state the worker keeps up to date (its phase, and Temporal's reachability
checked every few seconds in the background), never from a call made per probe, so a probe
answers at once however busy the worker is. /metrics joins two sources: the Temporal runtime's
Prometheus exporter (the SDK's worker metrics and Tamma's task metrics recorded by workflows,
which the Rust core serves on a socket of its own, bound to loopback) and this process's own
gauges (prometheus_client). No library merges a Rust-side exporter with a Python registry on one
port, hence the few lines that fetch and append.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any, Literal

import httpx
import uvicorn
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client

from tamma.api.server import server_options
from tamma.errors import ConfigError
from tamma.runtime.client import first_line

log = logging.getLogger(__name__)

Phase = Literal["starting", "waiting", "polling", "unfit", "draining"]
CHECK_EVERY_S = 5.0


def split_address(address: str, key: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{key} = {address!r} is not host:port (e.g. 0.0.0.0:9464)")
    return host.strip("[]"), int(port)


def loopback_port() -> int:
    """A free port on 127.0.0.1 for the SDK's exporter, which only this process reads. The Rust
    core binds it a moment later; should another process take it meanwhile, the worker says so."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class WorkerHealth:
    """What the worker's endpoint reports; `serve()` moves the phase, `watch()` checks Temporal."""

    def __init__(self, address: str, sdk_metrics: str, task_queue: str) -> None:
        self.host, self.port = split_address(address, "worker.health_address")
        self.sdk_metrics = sdk_metrics  # host:port of the Temporal runtime's exporter
        self.task_queue = task_queue
        self.phase: Phase = "starting"
        self.detail = "starting"
        self.client: Client | None = None
        self.reachable: bool | None = None
        self.checked_at = 0.0
        self.registry = CollectorRegistry()
        self._ready = Gauge(
            "tamma_worker_ready", "1 while the worker polls a reachable Temporal", registry=self.registry
        )
        self._up = Gauge(
            "tamma_worker_temporal_reachable", "1 when Temporal answered the last check", registry=self.registry
        )
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._tasks: list[asyncio.Task[Any]] = []

    # ---- state ---------------------------------------------------------------------------------

    def waiting(self, why: str) -> None:
        self.phase, self.detail = "waiting", why

    def polling(self, client: Client, address: str) -> None:
        self.client, self.reachable, self.checked_at = client, True, time.time()
        self.phase, self.detail = "polling", f"polling {self.task_queue!r} on {address}"
        self._tasks.append(asyncio.create_task(self._watch()))

    def unfit(self, why: str) -> None:
        """Polling for workflows and light steps, no longer for heavy ones (its disk cannot take them)."""
        self.phase, self.detail = "unfit", f"takes no heavy steps: {why}"

    def draining(self) -> None:
        self.phase, self.detail = "draining", "stopped polling; finishing the steps in flight"

    @property
    def ready(self) -> bool:
        return self.phase == "polling" and bool(self.reachable)

    def report(self) -> dict[str, Any]:
        self._ready.set(1 if self.ready else 0)
        self._up.set(1 if self.reachable else 0)
        return {
            "status": "ready" if self.ready else "not_ready",
            "phase": self.phase,
            "detail": self.detail,
            "temporal": {
                "reachable": self.reachable,
                "checked_at": self.checked_at or None,
            },
            "task_queue": self.task_queue,
        }

    async def _watch(self) -> None:
        while self.client is not None:
            await asyncio.sleep(CHECK_EVERY_S)
            try:
                await self.client.workflow_service.get_system_info(GetSystemInfoRequest(), timeout=timedelta(seconds=2))
                if not self.reachable:
                    log.info("Temporal answers again")
                self.reachable = True
            except Exception as exc:  # any failure means "not reachable"; the reason is reported
                if self.reachable:
                    log.warning("Temporal does not answer: %s", first_line(exc))
                self.reachable = False
                self.detail = f"Temporal does not answer: {first_line(exc)}"
            else:
                if self.phase == "polling":
                    self.detail = f"polling {self.task_queue!r}"
            self.checked_at = time.time()

    # ---- HTTP ----------------------------------------------------------------------------------

    def app(self) -> FastAPI:
        app = FastAPI(title="Tamma worker", docs_url=None, redoc_url=None, openapi_url=None)

        @app.get("/live")
        async def live() -> dict[str, str]:
            return {"status": "alive", "phase": self.phase}

        @app.get("/ready")
        async def ready() -> JSONResponse:
            return JSONResponse(self.report(), status_code=200 if self.ready else 503)

        @app.get("/health")
        async def health() -> dict[str, Any]:
            return self.report()

        @app.get("/metrics")
        async def metrics() -> Response:
            self.report()
            sdk = b""
            try:
                async with httpx.AsyncClient(timeout=2.0) as http:
                    answer = await http.get(f"http://{self.sdk_metrics}/metrics")
                sdk = answer.content if answer.status_code == 200 else b""
            except httpx.HTTPError as exc:  # still serve this process's own gauges
                log.warning("the Temporal runtime's metrics could not be read: %s", exc)
            body = sdk.rstrip(b"\n") + b"\n" + generate_latest(self.registry) if sdk else generate_latest(self.registry)
            return Response(body, media_type=CONTENT_TYPE_LATEST)

        return app

    async def start(self) -> None:
        """Bind and serve; a taken or forbidden address ends the worker with a clear message.
        The socket is bound here, not by uvicorn, which would exit the process on a bind error."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # accepted sockets inherit it
        try:
            sock.bind((self.host, self.port))
            sock.listen(128)  # probes queue from now on, before the server thread accepts them
        except OSError as exc:
            sock.close()
            raise ConfigError(
                f"worker.health_address {self.host}:{self.port} cannot be served ({exc.strerror}): "
                "choose a free port, or an address of this host"
            ) from None
        # The same bounded reads as the API server (slow heads and bodies cut off, headers capped
        # before buffering): a cluster exposes this port to whatever can reach the pod.
        config = uvicorn.Config(self.app(), log_config=None, access_log=False, lifespan="off", **server_options())
        server = self._server = _Quiet(config)
        # Its own thread and event loop: a worker whose loop is busy (many steps, subprocesses)
        # still answers its probes at once; the state it reports is plain attributes.
        self._thread = threading.Thread(
            target=lambda: asyncio.run(server.serve(sockets=[sock])), name="tamma-health", daemon=True
        )
        self._thread.start()
        log.info("worker health on http://%s:%d (/live, /ready, /health, /metrics)", self.host, self.port)

    async def stop(self) -> None:
        self.client = None
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 10)
        for task in self._tasks:
            if not task.done():
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, SystemExit, Exception):
                await task


class _Quiet(uvicorn.Server):
    """uvicorn without its signal handlers: the worker owns SIGTERM/SIGINT (they start its drain)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
