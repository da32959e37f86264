"""Will a worker run this task? The one answer used by `tamma start`, `status`, `/health`, the
metrics and the API's decisions.

Temporal keeps listing a worker as a *poller* for minutes after it died (its poller history has a
five-minute TTL, and a live idle worker re-polls only every ~60 s), so pollers cannot say "no
worker" quickly. Workers of this SDK also send *worker heartbeats* (RecordWorkerHeartbeat, read
back with ListWorkers); Tamma's launchers send them every `HEARTBEAT` and a graceful exit reports
its shutdown at once, so a worker that exits is gone from the answer at once and one that is
killed within `FRESH`. Pollers remain the answer for a server that keeps no heartbeats (an older
Temporal, or one with them turned off) and for workers that send none, with their coarser window.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Literal

from temporalio.api.enums.v1 import TaskQueueType, WorkerStatus
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest, ListWorkersRequest
from temporalio.client import Client
from temporalio.runtime import Runtime, TelemetryConfig
from temporalio.service import RPCError, RPCStatusCode

from tamma.activity_names import heavy_queue

#: how often Tamma's workers tell Temporal they are alive
HEARTBEAT = timedelta(seconds=2)
#: a heartbeat older than this (or than 2.5 of the worker's own interval) is a worker gone
FRESH = timedelta(seconds=6)
#: a poller seen this recently is alive (an idle worker re-polls within about a minute)
POLL_FRESH = timedelta(seconds=70)

START_HINT = "start one with `tamma worker` (or `python worker.py`)"


@cache
def heartbeat_runtime() -> Runtime:
    """The process's Temporal runtime when no metrics runtime is asked for: the SDK default, but
    with worker heartbeats every HEARTBEAT instead of every minute."""
    return Runtime(telemetry=TelemetryConfig(), worker_heartbeat_interval=HEARTBEAT)


@dataclass(frozen=True)
class Seen:
    """One worker on one queue, as Temporal last heard of it."""

    identity: str
    queue: str
    last: datetime
    live: bool
    how: Literal["heartbeat", "poller"]
    #: a heartbeat that reported the worker's shutdown: that instance is gone for good
    ended: bool = False


@dataclass(frozen=True)
class Presence:
    queues: tuple[str, ...]
    seen: tuple[Seen, ...] = ()
    #: why the answer is unknown (Temporal did not answer); "" when it is known
    unknown: str = ""
    checked_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def live(self, queue: str) -> list[Seen]:
        return [s for s in self.seen if s.queue == queue and s.live]

    @property
    def missing(self) -> list[str]:
        return [q for q in self.queues if not self.live(q)]

    @property
    def serving(self) -> bool:
        """Every queue a task needs has a live worker (False when Temporal did not answer)."""
        return not self.unknown and not self.missing

    def last_seen(self, queue: str) -> datetime | None:
        times = [s.last for s in self.seen if s.queue == queue]
        return max(times) if times else None

    def identities(self) -> list[str]:
        return sorted({s.identity for s in self.seen if s.live})

    def other_builds(self, version: str) -> list[str]:
        """Live Tamma workers of another version than `version` ("tamma-worker-12@host v0.1.0"):
        they run this version's tasks with their own code."""
        found = set()
        for who in self.identities():
            build = build_of(who)
            if build and build != version:
                found.add(f"{who.split(' ')[0]} v{build}")
        return sorted(found)

    def waiting(self) -> str:
        """'' when served; else what a person reads: which queue has no worker since when, and the fix."""
        if self.unknown:
            return f"cannot tell whether a worker is running: {self.unknown}"
        if not self.missing:
            return ""
        parts = []
        for q in self.missing:
            last = self.last_seen(q)
            since = f"since {last.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC" if last else "(none seen)"
            parts.append(f"{q!r} {since}")
        return f"waiting for a worker — none polling {', '.join(parts)}; {START_HINT}"


_EPOCH = timedelta(days=365 * 100)  # "before any time": no shutdown was reported

#: what a server that keeps no worker heartbeats answers ListWorkers with
_NO_HEARTBEATS = (
    RPCStatusCode.UNIMPLEMENTED,
    RPCStatusCode.PERMISSION_DENIED,
    RPCStatusCode.FAILED_PRECONDITION,
    RPCStatusCode.INVALID_ARGUMENT,
)


def build_of(identity: str) -> str:
    """The Tamma version a worker's identity names ("tamma-worker-12@host v0.1.0 cfg:…"), or ""."""
    m = re.search(r" v(\S+)", identity)
    return m.group(1) if m else ""


def _ours(identity: str) -> bool:
    """A worker Tamma started (runtime.worker, the CLI's): it heartbeats every HEARTBEAT."""
    return identity.startswith(("tamma-worker-", "tamma-cli-"))


def _fresh(last: datetime, now: datetime, window: timedelta) -> bool:
    return now - last <= window or last > now  # a worker clock ahead of ours: it is talking now


async def _heartbeats(client: Client, queue: str, rpc_timeout: timedelta) -> list[Seen] | None:
    """Workers that sent heartbeats for `queue`; None when the server keeps none."""
    try:
        resp = await client.workflow_service.list_workers(
            ListWorkersRequest(namespace=client.namespace, query=f'TaskQueue="{queue}"', page_size=200),
            timeout=rpc_timeout,
        )
    except RPCError as exc:
        if exc.status in _NO_HEARTBEATS:
            return None
        raise  # a server that did not answer: presence is unknown, not guessed from pollers
    now = datetime.now(UTC)
    seen = []
    for info in resp.workers_info:
        hb = info.worker_heartbeat
        last = hb.heartbeat_time.ToDatetime(UTC)
        every = hb.elapsed_since_last_heartbeat.ToTimedelta()
        # its own interval (from its last two heartbeats) decides; after one heartbeat only, a
        # Tamma worker's is HEARTBEAT, another's may be the SDK's default minute
        if every:
            window = max(FRESH, every * 2.5 + timedelta(seconds=1))
        else:
            window = FRESH if _ours(hb.worker_identity) else POLL_FRESH
        running = hb.status in (WorkerStatus.WORKER_STATUS_RUNNING, WorkerStatus.WORKER_STATUS_UNSPECIFIED)
        seen.append(
            Seen(hb.worker_identity, queue, last, running and _fresh(last, now, window), "heartbeat", not running)
        )
    return seen


async def _pollers(
    client: Client, queue: str, kind: TaskQueueType.ValueType, rpc_timeout: timedelta, heartbeats_kept: bool
) -> list[Seen]:
    """Workers polling `queue`. Where the server keeps heartbeats, a Tamma worker listed only
    here has just started (its first heartbeat is on the way) or died before sending one: it
    counts while its poll is FRESH. Any other poller counts for a long poll's minute."""
    resp = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(namespace=client.namespace, task_queue=TaskQueue(name=queue), task_queue_type=kind),
        timeout=rpc_timeout,
    )
    now = datetime.now(UTC)
    out = []
    for p in resp.pollers:
        last = p.last_access_time.ToDatetime(UTC)
        window = FRESH if heartbeats_kept and _ours(p.identity) else POLL_FRESH
        out.append(Seen(p.identity, queue, last, _fresh(last, now, window), "poller"))
    return out


async def presence(
    client: Client,
    task_queue: str,
    *,
    exclude: Callable[[str], bool] | None = None,
    timeout_s: float = 2.0,
) -> Presence:
    """Who serves Tamma's two queues (workflows + light steps on `task_queue`, heavy steps on its
    `-heavy` queue), from heartbeats where the server keeps them, else pollers. `exclude`: worker
    identities not to count (the CLI's own in-process worker, say). Never raises: a Temporal that
    does not answer gives an `unknown` presence."""
    queues = (task_queue, heavy_queue(task_queue))
    kinds = (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY)
    timeout = timedelta(seconds=timeout_s)

    async def ask() -> tuple[list[list[Seen] | None], list[list[Seen]]]:
        beats = await asyncio.gather(*(_heartbeats(client, q, timeout) for q in queues))
        kept = all(b is not None for b in beats)
        polls = await asyncio.gather(
            *(_pollers(client, q, k, timeout, kept) for q, k in zip(queues, kinds, strict=True))
        )
        return list(beats), list(polls)

    try:
        beats, polls = await asyncio.wait_for(ask(), 2 * timeout_s + 0.5)
    except (RPCError, TimeoutError, RuntimeError) as exc:
        why = getattr(exc, "message", "") or type(exc).__name__
        return Presence(queues, unknown=f"Temporal did not answer ({why})")
    seen: list[Seen] = []
    for hb, pl in zip(beats, polls, strict=True):
        hb = hb or []
        seen += hb
        # A poller that sends no heartbeats (another runtime, an older SDK, a server keeping
        # none) counts by its poll; one that does is judged by its heartbeats alone. A worker
        # started again under the same identity (the same process) polls before its first
        # heartbeat: its polls count when they are newer than the old instance's shutdown.
        beating = {s.identity for s in hb if not s.ended}
        ended = {s.identity: s.last for s in sorted(hb, key=lambda e: e.last) if s.ended}
        seen += [p for p in pl if p.identity not in beating and p.last > ended.get(p.identity, p.last - _EPOCH)]
    if exclude is not None:
        seen = [s for s in seen if not exclude(s.identity)]
    return Presence(queues, tuple(seen))
