"""/live, /health, /ready, /metrics: not behind JWT, cheap enough to poll."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest, GetSystemInfoRequest
from temporalio.client import Client

from tamma.activity_names import heavy_queue
from tamma.api.metrics import Metrics
from tamma.runtime import reload as reloading
from tamma.runtime.client import first_line
from tamma.runtime.presence import Presence, presence
from tamma.version import tamma_version

router = APIRouter(tags=["operations"])


class TemporalProbe:
    """Remembers the last answers from Temporal — reachable or not, and who polls Tamma's task
    queues with how much waiting — so /health answers in microseconds under any load."""

    def __init__(self, client: Client, task_queue: str = "", metrics: Metrics | None = None) -> None:
        self.client = client
        self.task_queue = task_queue
        self.metrics = metrics
        self.reachable: bool | None = None
        self.checked_at = 0.0
        self.error = ""
        self.queues: dict[str, dict[str, object]] = {}
        self.presence: Presence | None = None

    async def check(self, timeout_s: float = 2.0) -> bool:
        try:
            await self.client.workflow_service.get_system_info(
                GetSystemInfoRequest(), timeout=timedelta(seconds=timeout_s)
            )
            self.reachable, self.error = True, ""
        except Exception as exc:  # any failure means "not reachable"; the reason is reported
            self.reachable, self.error = False, first_line(exc)
        self.checked_at = time.time()
        if self.metrics is not None:
            self.metrics.temporal_up.set(1 if self.reachable else 0)
        return self.reachable

    async def count_waiting(self, timeout_s: float = 2.0) -> None:
        """How many tasks wait for a person (the stuck-approvals alert watches this)."""
        if self.metrics is None or not self.reachable:
            return
        for status in ("awaiting_approval", "parked"):
            try:
                found = await self.client.count_workflows(
                    f'TammaStatus = "{status}" AND ExecutionStatus = "Running"',
                    rpc_timeout=timedelta(seconds=timeout_s),
                )
            except Exception:  # a count is advice; health and the other metrics go on
                continue
            self.metrics.waiting.labels(status).set(found.count)

    async def check_queues(self, timeout_s: float = 2.0) -> None:
        """Live workers (runtime.presence: heartbeats, not Temporal's minutes-long poller list)
        and backlog of the workflow queue, the light and the heavy activity queues. Nothing is
        claimed about workers while Temporal does not answer."""
        if not self.task_queue or not self.reachable:
            self.queues, self.presence = {}, None
            return
        self.presence = await presence(self.client, self.task_queue, timeout_s=timeout_s)
        kinds = {
            "workflow": (self.task_queue, TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW),
            "activity": (self.task_queue, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY),
            "heavy": (heavy_queue(self.task_queue), TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY),
        }
        described = await asyncio.gather(
            *(
                self.client.workflow_service.describe_task_queue(
                    DescribeTaskQueueRequest(
                        namespace=self.client.namespace,
                        task_queue=TaskQueue(name=name),
                        task_queue_type=qtype,
                        report_stats=True,
                    ),
                    timeout=timedelta(seconds=timeout_s),
                )
                for name, qtype in kinds.values()
            ),
            return_exceptions=True,
        )  # the three at once: one round trip's time, not three
        for (kind, (name, _)), resp in zip(kinds.items(), described, strict=True):
            if isinstance(resp, BaseException):  # reported, never raised: health must answer
                self.queues[kind] = {"queue": name, "error": first_line(resp)}
                continue
            backlog = int(resp.stats.approximate_backlog_count) if resp.HasField("stats") else 0
            live = len(self.presence.live(name)) if not self.presence.unknown else len(resp.pollers)
            self.queues[kind] = {"queue": name, "pollers": live, "backlog": backlog}
            if self.metrics is not None:
                self.metrics.pollers.labels(name, kind).set(live)
                self.metrics.backlog.labels(name, kind).set(backlog)

    async def loop(self, every_s: float = 3.0, details_s: float = 5.0) -> None:
        while True:
            if await self.check():
                try:
                    await asyncio.wait_for(self._details(), details_s)
                except TimeoutError:
                    # It answered the probe, then stopped answering (frozen, overloaded): say so
                    # now rather than after every RPC of this round has run out its own deadline.
                    self.reachable, self.error = False, f"Temporal stopped answering (nothing within {details_s:g}s)"
                    self.queues, self.presence = {}, None
                    if self.metrics is not None:
                        self.metrics.temporal_up.set(0)
            await asyncio.sleep(every_s)

    async def _details(self) -> None:
        await self.check_queues()
        await self.count_waiting()


@router.get("/live", summary="The process is up")
async def live() -> dict[str, str]:
    return {"status": "alive"}


@router.get("/health", summary="Temporal and settings status, from the last probe")
async def health(request: Request) -> JSONResponse:
    probe: TemporalProbe = request.app.state.probe
    temporal = {None: "unknown", True: "reachable", False: "unreachable"}[probe.reachable]
    queues = dict(probe.queues)
    seen = probe.presence
    no_pollers = [k for k, q in queues.items() if q.get("pollers") == 0]
    if not probe.reachable or seen is None:
        workers = "unknown (Temporal is not reachable)" if probe.reachable is False else "unknown"
    else:
        workers = seen.waiting() or "polling: " + ", ".join(w.split(" ")[0] for w in seen.identities())
    body = {
        "status": "ok" if probe.reachable and seen is not None and seen.serving and not no_pollers else "degraded",
        "version": tamma_version(),
        "temporal": temporal,
        "temporal_checked_at": probe.checked_at,
        "task_queues": queues,
        "workers": workers,
        # an edit of the config file that was refused: the running settings are the last good ones
        "settings": f"last edit refused: {reloading.last_refusal}" if reloading.last_refusal else "ok",
        "webhooks": {
            "github": "on" if request.app.state.settings.webhooks.github_secrets else "off (no secret)",
            "gitlab": "on" if request.app.state.settings.webhooks.gitlab_tokens else "off (no token)",
        },
    }
    return JSONResponse(body)


@router.get("/ready", summary="Ready when Temporal answers now")
async def ready(request: Request) -> JSONResponse:
    probe: TemporalProbe = request.app.state.probe
    ok = await probe.check()
    return JSONResponse({"ready": ok, "temporal": "reachable" if ok else probe.error}, status_code=200 if ok else 503)


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
