"""What every CLI command needs: settings, a Temporal client, and (when no external worker
serves the queue) a worker in this process."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from temporalio.client import Client
from temporalio.worker import Worker

from tamma.config import Settings
from tamma.runtime.client import open_client
from tamma.runtime.presence import Presence, presence
from tamma.runtime.tasks import TaskService
from tamma.runtime.wiring import build_activities
from tamma.runtime.worker import CONFIG_MARK, build_workers

CLI_IDENTITY = "tamma-cli"


@dataclass
class Session:
    settings: Settings
    console: Console
    client: Client
    address: str
    embedded: bool
    tasks: TaskService
    config_file: Path | None = None
    workers: list[Worker] = field(default_factory=list)
    _runs: list[asyncio.Task[None]] = field(default_factory=list)

    async def external_workers(self) -> Presence:
        """Workers outside any `tamma` CLI (a `tamma worker`, the background worker, a
        deployment) that will run tasks now (runtime.presence): `.serving` says whether they do."""
        return await presence(
            self.client, self.settings.temporal.task_queue, exclude=lambda who: who.startswith(CLI_IDENTITY)
        )

    async def drifted_workers(self) -> list[str]:
        """Live workers with settings other than this shell's (they started before the settings
        changed, or were given others), or running another version of Tamma."""
        from tamma.version import tamma_version

        mine = f"{CONFIG_MARK}{self.settings.fingerprint()}"
        seen = await presence(self.client, self.settings.temporal.task_queue)
        settings = {who.split(" ")[0] for who in seen.identities() if CONFIG_MARK in who and mine not in who}
        builds = seen.other_builds(tamma_version())
        return sorted(settings - {b.split(" ")[0] for b in builds}) + builds

    async def start_worker(self) -> bool:
        """Run a worker here unless external workers serve the queue; True if one started."""
        if self.workers or (await self.external_workers()).serving:
            return False
        s = self.settings.worker.model_copy(update={"graceful_shutdown_s": 2.0})
        identity = f"{CLI_IDENTITY}-{os.getpid()}@{socket.gethostname()}"
        self.workers = build_workers(
            self.client, self.settings.temporal.task_queue, build_activities(self.settings), s, identity=identity
        )
        self._runs = [asyncio.create_task(w.run()) for w in self.workers]
        return True

    async def stop_worker(self) -> None:
        await asyncio.gather(*(w.shutdown() for w in self.workers), return_exceptions=True)
        await asyncio.gather(*self._runs, return_exceptions=True)
        self.workers, self._runs = [], []


@asynccontextmanager
async def open_session(settings: Settings, console: Console, config_file: Path | None = None) -> AsyncIterator[Session]:
    client, address, embedded = await open_client(settings)
    session = Session(
        settings, console, client, address, embedded, TaskService(client, settings.temporal.task_queue), config_file
    )
    try:
        yield session
    finally:
        await session.stop_worker()
