"""The web server: webhooks, the task API and operational endpoints, on one FastAPI app.

`create_app(settings)` is the entry point (uvicorn's factory); nothing is read from the
environment at import time."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import gc
import json
import logging
import logging.handlers
import queue
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError

from tamma.api import auth_routes, config_routes, docs, errors, ops, tasks, webhooks
from tamma.api.live import LiveHub
from tamma.api.metrics import Metrics
from tamma.api.ratelimit import RateLimiter
from tamma.api.server import MAX_HEADER_BYTES
from tamma.config import Settings, find_config_file
from tamma.logs import add_secrets, bound_task
from tamma.logs import formatter as log_formatter
from tamma.runtime import sessions
from tamma.runtime.client import ensure_search_attributes, resolve_address, security
from tamma.runtime.polling import keep_schedules
from tamma.runtime.reload import changed_keys, watch_settings, watched_files
from tamma.runtime.tasks import TaskService
from tamma.telemetry import fastapi_telemetry, tracing_interceptors
from tamma.version import tamma_version

access = logging.getLogger("tamma.access")
log = logging.getLogger("tamma.api")
_UNLIMITED = ("/live", "/health", "/ready", "/metrics")
_WEBHOOKS = "/webhooks/"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


async def _answer(send: Send, status: int, doc: dict[str, Any]) -> None:
    body = json.dumps(doc).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Edge:
    """Pure ASGI middleware (no per-request task, unlike BaseHTTPMiddleware): per-IP rate limits
    (one bucket set for webhooks, one for the API, so a busy forge cannot lock people out of the
    API and a script polling the API cannot make the forge's deliveries fail), latency metrics
    and a JSON access log line that never holds bodies, queries or headers."""

    def __init__(self, app: ASGIApp, webhook_limiter: RateLimiter, api_limiter: RateLimiter, metrics: Metrics) -> None:
        self.app, self.webhook_limiter, self.api_limiter, self.metrics = app, webhook_limiter, api_limiter, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path: str = scope["path"]
        client = (scope.get("client") or ("unknown", 0))[0]
        status = {"code": 500}
        if sum(len(k) + len(v) for k, v in scope["headers"]) > MAX_HEADER_BYTES:
            # No forge or API client sends this much; refuse before any of it is looked at.
            await _answer(send, 431, {"detail": f"request headers exceed {MAX_HEADER_BYTES} bytes"})
            self._record(scope, 431, started, client)
            return
        if not path.startswith(_UNLIMITED):
            wait = (self.webhook_limiter if path.startswith(_WEBHOOKS) else self.api_limiter).check(client)
            if wait:
                body = json.dumps({"detail": "rate limit exceeded; retry later"}).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 429,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"retry-after", str(int(wait) + 1).encode()),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                self._record(scope, 429, started, client)
                return

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        platform = webhooks.PATHS.get(path) if scope["method"] == "POST" else None
        try:
            if platform is None:
                await self.app(scope, receive, send_status)
            else:
                # The fast path: a delivery goes straight to the webhook code. FastAPI's routing,
                # dependency solving and exception middleware cost as much again as the HMAC and
                # the JSON parse; the routes stay declared for OpenAPI and do the same thing.
                response = await webhooks.deliver(Request(scope, receive), platform)
                await response(scope, receive, send_status)
        finally:
            self._record(scope, status["code"], started, client, path if platform else None)

    def _record(self, scope: Scope, status: int, started: float, client: str, route: str | None = None) -> None:
        elapsed = time.perf_counter() - started
        route = route or getattr(scope.get("route"), "path", "unmatched")
        method = scope["method"] if scope["method"] in _METHODS else "other"  # any token parses as a method
        self.metrics.latency.labels(method, route, str(status)).observe(elapsed)
        if access.isEnabledFor(logging.INFO):
            line: dict[str, Any] = {
                "method": scope["method"],
                "path": scope["path"],
                "route": route,
                "status": status,
                "ms": round(elapsed * 1000, 2),
                "client": client,
            }
            webhook = (scope.get("state") or {}).get("webhook")
            if webhook:  # what the delivery did, including why it was ignored or refused
                line["webhook"] = webhook
            task = webhook.get("task") if webhook else None
            with bound_task(task) if task else contextlib.nullcontext():
                access.info("request", extra={"fields": line})


def create_app(
    settings: Settings, client: Client | None = None, config_path: Path | None = None, reload: bool = True
) -> FastAPI:
    """The web server. With `reload`, an edit of its config file applies the per-request sections
    at once (webhook secrets, rate limits, API keys, approval, workflow, budget) and names the
    sections that need a restart; an invalid edit is refused and the running settings stay."""
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        nonlocal client
        if client is None:
            address, _ = await asyncio.to_thread(resolve_address, settings)
            # lazy: the server starts (and answers 503) even while Temporal is down.
            client = await Client.connect(
                address,
                namespace=settings.temporal.namespace,
                lazy=True,
                data_converter=pydantic_data_converter,
                interceptors=tracing_interceptors(settings),
                **(security(settings.temporal) if settings.temporal.address else {}),
            )
        app.state.client = client
        # The one log format (tamma.logs): uvicorn's config gave the handlers; the format, the
        # context and the redaction of this server's secrets come from the settings.
        add_secrets(settings.secrets())
        for name in ("tamma", "uvicorn.error"):
            for handler in logging.getLogger(name).handlers:
                handler.setFormatter(log_formatter(settings.logging.format, sys.stdout))
        logging.getLogger("tamma").setLevel(settings.logging.level.upper())
        app.state.tasks = TaskService(client, settings.temporal.task_queue)
        app.state.live = LiveHub(app.state.tasks)  # one feed per watched task, for SSE and WebSocket
        app.state.hub = webhooks.WebhookHub(settings, client, metrics)
        app.state.probe = ops.TemporalProbe(client, settings.temporal.task_queue, metrics)
        for platform, on in (("GitHub", settings.webhooks.github_secrets), ("GitLab", settings.webhooks.gitlab_tokens)):
            if not on:
                log.error(
                    "%s webhooks are OFF: no secret configured (webhooks.%s); the endpoint answers 503",
                    platform,
                    "github_secrets" if platform == "GitHub" else "gitlab_tokens",
                )
        probing = asyncio.create_task(app.state.probe.loop())
        # The session worker starts with this replica's first /auth request (tamma.api.auth_routes):
        # a server nobody refreshes at carries no worker (~7 MB).
        app.state.session_worker_factory = lambda: sessions.run_session_worker(
            _worker_client(client, settings), settings
        )
        app.state.session_worker = None
        app.state.session_check = sessions.SessionCheck(client)  # revoked sessions' access tokens refused
        app.state.polling = asyncio.create_task(_prepare_temporal(client, settings))
        reloading = asyncio.create_task(_reload_on_change(app)) if reload else None
        # What start-up built (FastAPI, pydantic schemas, the SDKs) lives as long as the process:
        # keep it out of the collector's full passes, which otherwise stall requests now and then.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            probing.cancel()
            if app.state.session_worker is not None:
                app.state.session_worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await app.state.session_worker
            app.state.polling.cancel()
            if reloading is not None:
                reloading.cancel()

    app = FastAPI(
        title="Tamma",
        version=tamma_version(),
        lifespan=lifespan,
        description="Webhooks, task API and operations for the Tamma development agent.",
        telemetry=fastapi_telemetry(settings),
        docs_url=None,  # served by api.docs from packaged assets, not a CDN
        redoc_url=None,
    )
    docs.install(app)
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.config_path = config_path or find_config_file() or Path("tamma.toml")
    errors.install(app)
    for router in (webhooks.router, tasks.router, auth_routes.router, config_routes.router, ops.router):
        app.include_router(router)
    app.state.webhook_limiter = RateLimiter(settings.webhooks.rate_limit_per_min)
    app.state.api_limiter = RateLimiter(settings.api.rate_limit_per_min)
    app.add_middleware(
        Edge, webhook_limiter=app.state.webhook_limiter, api_limiter=app.state.api_limiter, metrics=metrics
    )
    return app


def _worker_client(client: Client, settings: Settings) -> Callable[[], Awaitable[Client]]:
    """How the session worker gets a client: the server's own unless it is lazy (a worker needs
    a connected one), else one connected like it once Temporal answers."""

    async def connect() -> Client:
        if not client.service_client.config.lazy:
            return client
        address, _ = await asyncio.to_thread(resolve_address, settings)
        return await Client.connect(
            address,
            namespace=settings.temporal.namespace,
            data_converter=pydantic_data_converter,
            **(security(settings.temporal) if settings.temporal.address else {}),
        )

    return connect


async def _prepare_temporal(client: Client, settings: Settings, retry_s: float = 5.0) -> None:
    """What the server needs from a Temporal server no CLI or worker may have touched: Tamma's
    search attributes (every start sets them; without them each start would fail), then the
    polling schedules. Retried until Temporal answers; the server serves (503) meanwhile."""
    while True:
        try:
            await ensure_search_attributes(client, settings.temporal.namespace)
            break
        except (RPCError, RuntimeError) as exc:
            log.warning("cannot register search attributes yet (%s); trying again in %.0fs", exc, retry_s)
            await asyncio.sleep(retry_s)
    await keep_schedules(client, settings)


async def _reload_on_change(app: FastAPI) -> None:
    path: Path = app.state.config_path

    async def apply(new: Settings) -> None:
        old: Settings = app.state.settings
        keys = changed_keys(old, new)
        if not keys:
            return
        applied, restart = config_routes.apply_settings(app, new)
        if {k.split(".")[0] for k in keys} & {"polling", "webhooks", "workflow", "approval", "budget"}:
            app.state.polling.cancel()  # the schedules carry these: bring them in step
            app.state.polling = asyncio.create_task(keep_schedules(app.state.client, app.state.settings))
        log.warning(
            "config file changed (%s): applied now: %s; needs a restart: %s",
            ", ".join(keys),
            ", ".join(applied) or "-",
            ", ".join(restart) or "-",
        )

    await watch_settings(watched_files(path), apply, path)


def queued_stdout() -> logging.Handler:
    """A handler that hands records to a writer thread (Python 3.11's dictConfig cannot wire a
    QueueHandler to a listener by itself)."""
    q: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    stream = logging.StreamHandler(sys.stdout)
    stream.setFormatter(logging.Formatter("%(message)s"))
    listener = logging.handlers.QueueListener(q, stream)
    listener.start()
    atexit.register(listener.stop)
    return logging.handlers.QueueHandler(q)


def lean_log_records() -> None:
    """The switches the logging HOWTO ("Optimization") gives for records nobody reads: our lines
    name no caller, thread or process, and looking those up costs on every request."""
    logging._srcfile = None  # documented there as the way to skip the caller lookup
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False


def access_log_config() -> dict[str, Any]:
    """uvicorn log config: our JSON access lines instead of uvicorn's (which include queries).
    Lines go through a queue to a writer thread, so a request never waits on stdout."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(message)s"}},
        "handlers": {
            "out": {"()": "tamma.api.app.queued_stdout"},
        },
        "loggers": {
            "tamma": {"handlers": ["out"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"handlers": ["out"], "level": "INFO", "propagate": False},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }
