"""Worker processes: one for workflows and light steps, one for heavy steps on their own queue."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from temporalio.client import Client
from temporalio.runtime import Runtime
from temporalio.worker import Worker

from tamma.activities import IssueActivities
from tamma.activity_names import heavy_queue
from tamma.agent.environment import sweep_builds
from tamma.agent.sandbox import require_isolation
from tamma.agent.workspace import sweep_workspaces
from tamma.config import Settings, WorkerSettings
from tamma.errors import ConfigError, TemporalUnavailable
from tamma.runtime import reload as reloading
from tamma.runtime.client import metrics_runtime, open_client
from tamma.runtime.disk import unusable
from tamma.runtime.reload import RESTART, changed_keys, watch_settings, watched_files
from tamma.runtime.wiring import build_activities
from tamma.version import tamma_version
from tamma.workflows.issue import IssueWorkflow
from tamma.workflows.poll import PollWorkflow

if TYPE_CHECKING:
    from tamma.runtime.health import WorkerHealth

log = logging.getLogger(__name__)
CONFIG_MARK = "cfg:"  # in a worker's identity: the fingerprint of the settings it runs with


def build_workers(
    client: Client, task_queue: str, activities: IssueActivities, settings: WorkerSettings, identity: str = ""
) -> list[Worker]:
    identity = identity or f"tamma-worker-{os.getpid()}@{socket.gethostname()}"
    common = {
        "graceful_shutdown_timeout": timedelta(seconds=settings.graceful_shutdown_s),
        "identity": identity,
    }
    light = Worker(
        client,
        task_queue=task_queue,
        workflows=[IssueWorkflow, PollWorkflow],
        activities=[*activities.all(), *activities.polling()],
        max_concurrent_activities=settings.light_concurrency,
        # A dead worker's sticky cache must not stall its workflows for long.
        sticky_queue_schedule_to_start_timeout=timedelta(seconds=settings.sticky_schedule_to_start_s),
        **common,  # type: ignore[arg-type]
    )
    heavy = Worker(
        client,
        task_queue=heavy_queue(task_queue),
        activities=activities.heavy(),
        max_concurrent_activities=settings.concurrency,
        **common,  # type: ignore[arg-type]
    )

    def sick(why: str) -> None:
        # A disk that cannot take a heavy step: stop polling for them (the step that found out
        # is handed back and runs on another worker); workflows and light steps go on here.
        if _sick(heavy):
            return
        heavy.tamma_sick = why  # type: ignore[attr-defined]
        asyncio.get_running_loop().create_task(heavy.shutdown())

    activities.on_sick = sick
    return [light, heavy]


async def run_workers(workers: list[Worker], stop: asyncio.Event, health: WorkerHealth | None = None) -> None:
    """Run until `stop` is set, then stop polling and let in-flight activities finish."""
    tasks: dict[asyncio.Task[Any], Worker] = {asyncio.create_task(w.run()): w for w in workers}
    waiter: asyncio.Task[Any] = asyncio.create_task(stop.wait())
    running: set[asyncio.Task[Any]] = set(tasks)
    while True:
        done, _ = await asyncio.wait([*running, waiter], return_when=asyncio.FIRST_COMPLETED)
        sick = [t for t in done if t is not waiter and _sick(tasks[t])]
        for t in sick:  # it stopped taking heavy steps on purpose: the rest goes on
            running.discard(t)
            why = _sick(tasks[t])
            log.error("stopped polling for heavy steps: %s", why)
            if health is not None:
                health.unfit(why)
        if len(sick) < len(done) or not running:
            break
    if health is not None:
        health.draining()
    if waiter not in done:  # a worker died on its own: surface its error
        waiter.cancel()
        for t in done:
            t.result()
    await asyncio.gather(*(w.shutdown() for w in workers if not _sick(w)))
    await asyncio.gather(*tasks, return_exceptions=True)


def _sick(worker: Worker) -> str:
    """Why this worker stopped taking heavy steps ("" while it takes them)."""
    return str(getattr(worker, "tamma_sick", ""))


def install_stop_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


async def _open_when_reachable(
    settings: Settings, stop: asyncio.Event, runtime: Runtime | None, health: WorkerHealth | None
) -> tuple[Client, str] | None:
    """Connect to Temporal, waiting with backoff (1 s doubling to 30 s) while it is not reachable
    yet — a worker started before its server (compose, Kubernetes) waits and says so (and is not
    ready meanwhile) instead of exiting. None when told to stop meanwhile. Configuration errors
    still end it at once."""
    delay = 1.0
    while True:
        try:
            client, address, _ = await open_client(settings, runtime)
            return client, address
        except TemporalUnavailable as exc:
            if not settings.temporal.address:
                raise  # the embedded server could not start: waiting will not help
            log.warning("%s; retrying in %.0fs", exc.message, delay)
            if health is not None:
                health.waiting(f"waiting for Temporal: {exc.message}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)
            return None
        delay = min(delay * 2, 30.0)


async def serve(
    settings: Settings, ready: Callable[[str], None] | None = None, config_file: Path | None = None, reload: bool = True
) -> int:
    """The worker process: connect, poll both queues until SIGTERM/SIGINT, drain, return 0; or,
    when its config file changes what a worker does, drain and return RESTART (the launcher
    re-execs). A worker that cannot isolate agent code refuses to start (unless opted out)."""
    sandbox = await asyncio.to_thread(require_isolation, settings.agent.sandbox)
    worker = settings.worker
    folders = [settings.data_dir / "work", settings.data_dir / "envs"]
    why = await asyncio.to_thread(unusable, folders, worker.min_free_mb, worker.min_free_inodes)
    if why is not None:  # a worker that would fail every heavy step must not take any: say so, exit non-zero
        raise ConfigError(
            f"this worker cannot run steps: {why}. Free space or fix the data dir (data_dir, TAMMA_DATA_DIR), "
            "or lower worker.min_free_mb"
        )
    await sweep_builds(settings.data_dir / "envs")  # environments a killed worker left half-built
    stale = max(3600.0, 2 * settings.workflow.step_timeout_s)  # no live step can be older
    swept = await asyncio.to_thread(sweep_workspaces, settings.data_dir / "work", stale)
    if swept:
        log.info("removed %d workspace(s) left by workers that died", swept)
    if settings.agent.sandbox.backend == "none":
        log.warning("agent.sandbox.backend = none: agent code runs WITHOUT isolation, with this user's rights")
    stop = asyncio.Event()
    install_stop_handlers(stop)
    health: WorkerHealth | None = None
    runtime: Runtime | None = None
    if settings.worker.health_address:
        from tamma.runtime.health import WorkerHealth, loopback_port  # FastAPI + uvicorn: only when served

        # The SDK's exporter on loopback; the health endpoint serves its metrics with its own.
        sdk_metrics = f"127.0.0.1:{loopback_port()}"
        runtime = metrics_runtime(sdk_metrics)
        health = WorkerHealth(settings.worker.health_address, sdk_metrics, settings.temporal.task_queue)
        await health.start()
    try:
        return await _serve(settings, stop, runtime, health, ready, config_file, reload, sandbox)
    finally:
        if health is not None:
            await health.stop()


async def _serve(
    settings: Settings,
    stop: asyncio.Event,
    runtime: Runtime | None,
    health: WorkerHealth | None,
    ready: Callable[[str], None] | None,
    config_file: Path | None,
    reload: bool,
    sandbox: str,
) -> int:
    opened = await _open_when_reachable(settings, stop, runtime, health)
    if opened is None:
        return 0  # stopped while still waiting for Temporal: nothing was running
    client, address = opened
    identity = (
        f"tamma-worker-{os.getpid()}@{socket.gethostname()} v{tamma_version()} {CONFIG_MARK}{settings.fingerprint()}"
    )
    workers = build_workers(
        client, settings.temporal.task_queue, build_activities(settings), settings.worker, identity=identity
    )
    restart: list[str] = []

    async def changed(new: Settings) -> None:
        if new.fingerprint() == settings.fingerprint():
            log.info("config file changed; nothing a worker uses differs")
            return
        restart.extend(changed_keys(settings, new))
        log.warning("settings changed (%s): draining in-flight steps, then restarting", ", ".join(restart))
        stop.set()

    watcher = (
        asyncio.create_task(
            watch_settings(watched_files(config_file), changed, config_file, stop, loaded=reloading.loaded_digest)
        )
        if reload
        else None
    )
    if ready:
        ready(
            f"worker polling {settings.temporal.task_queue!r} (+heavy, concurrency "
            f"{settings.worker.concurrency}) on {address}; sandbox: "
            f"{sandbox}"
        )
    if health is not None:
        health.polling(client, address)
    try:
        await run_workers(workers, stop, health)
    finally:
        if watcher is not None:
            watcher.cancel()
    return RESTART if restart else 0
