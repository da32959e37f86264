"""Chaos: N issues through worker processes that are SIGKILLed at random, with the Temporal
server itself killed and restarted once, against the same issues without kills, in one run.

    python bench/chaos.py [--issues 40] [--workers 3] [--seed 7]

Everything runs on 127.0.0.1 in a temp dir: a `temporal server start-dev` on its own SQLite
file (so a restart keeps the history), `python worker.py` processes, local repositories, the
scripted model. Only processes this script started are killed, by their PID; the chaos phase
stops by itself (a deadline) and every process is ended at exit.

Reports, for each phase: issues merged, duplicates (a second PR or a second merge of one issue),
wall time, and the chaos/no-kill ratio. Goal: all merged, no duplicate, within 2x the no-kill run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

sys.path.insert(0, str(Path(__file__).parent.parent))

from tamma.demo import make_demo
from tamma.models import IssueTaskInput, TaskStatus
from tamma.platforms.local import LocalPlatform
from tamma.providers.scripted import DEMO_TRANSCRIPT
from tamma.runtime.embedded import search_attribute_flags, temporal_binary
from tamma.runtime.tasks import TaskService

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Temporal:
    """A dev server on a fixed port and database file, killable and restartable."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.db = root / "temporal.db"
        self.log = (root / "temporal.log").open("ab")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [str(temporal_binary()), "server", "start-dev", "--headless", "--ip", "127.0.0.1"]
        argv += ["--port", str(self.port), "--db-filename", str(self.db), "--log-level", "error"]
        self.proc = subprocess.Popen(argv + search_attribute_flags(), stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.3):
                return
            time.sleep(0.1)
        raise RuntimeError("the Temporal dev server did not listen within 30 s")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


class Workers:
    """`python worker.py` processes on one task queue; SIGKILL one, start its replacement."""

    def __init__(self, root: Path, address: str, queue: str) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TAMMA_")}
        self.env.update(
            TAMMA_TEMPORAL__ADDRESS=address, TAMMA_TEMPORAL__TASK_QUEUE=queue, TAMMA_DATA_DIR=str(root / "data")
        )
        self.root = root
        self.procs: list[subprocess.Popen[bytes]] = []
        self.started = 0

    def spawn(self) -> None:
        self.started += 1
        log = (self.root / f"worker-{self.started}.log").open("wb")
        self.procs.append(
            subprocess.Popen([sys.executable, str(ROOT / "worker.py")], env=self.env, stdout=log, stderr=log)
        )

    def kill_one(self, rng: random.Random) -> None:
        alive = [p for p in self.procs if p.poll() is None]
        if alive:
            victim = rng.choice(alive)
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            self.procs.remove(victim)
        self.spawn()

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=40)
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGKILL)
                p.wait()
        self.procs.clear()


async def connect(address: str) -> Client:
    for _ in range(100):
        try:
            return await Client.connect(address, data_converter=pydantic_data_converter)
        except RuntimeError:
            await asyncio.sleep(0.2)
    raise RuntimeError(f"cannot connect to Temporal at {address}")


async def results(client: Client, queue: str, wids: list[str], deadline: float) -> dict[str, str]:
    """Each task's final status; survives the server going away and coming back."""
    service = TaskService(client, queue)
    out: dict[str, str] = {}
    while len(out) < len(wids) and time.monotonic() < deadline:
        for wid in wids:
            if wid in out:
                continue
            with contextlib.suppress(Exception):  # the server may be down right now
                state = await service.handle(wid).result(rpc_timeout=timedelta(seconds=2))
                out[wid] = state.status.value
        await asyncio.sleep(0.5)
    return out


def duplicates(repos: list[tuple[LocalPlatform, object]]) -> int:
    """A second PR or a second merge for one issue anywhere."""
    dup = 0
    for platform, _ in repos:
        dup += max(0, len(platform.list_pull_requests()) - 1)
        merges = subprocess.run(
            ["git", "-C", str(platform.path), "log", "--format=%s", "main"], capture_output=True, text=True, check=True
        ).stdout.count("Merge !")
        dup += max(0, merges - 1)
    return dup


async def phase(
    root: Path, temporal: Temporal, n: int, workers_n: int, chaos: bool, rng: random.Random, limit_s: float
) -> dict[str, float]:
    queue = f"chaos-{uuid.uuid4().hex[:8]}"
    address = f"127.0.0.1:{temporal.port}"
    repos = [make_demo(root / f"repo-{queue}-{i}", root / "data") for i in range(n)]
    workers = Workers(root, address, queue)
    for _ in range(workers_n):
        workers.spawn()
    client = await connect(address)
    service = TaskService(client, queue)
    options_kw = {"transcript": str(DEMO_TRANSCRIPT)}
    from tamma.config import Settings

    options = Settings(data_dir=root / "data").task_options(**options_kw)
    started = time.monotonic()
    wids = []
    for platform, issue in repos:
        wid, _ = await service.start(IssueTaskInput(repo=platform.repo, issue_number=issue.number, options=options))
        wids.append(wid)
    kills = 0
    server_killed = False
    collector = asyncio.create_task(results(client, queue, wids, started + limit_s))
    while chaos and not collector.done():
        await asyncio.sleep(rng.uniform(2, 6))
        if collector.done():
            break
        workers.kill_one(rng)
        kills += 1
        if not server_killed and time.monotonic() - started > 8:
            temporal.kill()
            await asyncio.sleep(1)
            temporal.start()
            server_killed = True
    done = await collector
    wall = time.monotonic() - started
    workers.stop()
    merged = sum(1 for s in done.values() if s == TaskStatus.MERGED.value)
    return {
        "merged": merged,
        "finished": len(done),
        "duplicates": duplicates(repos),
        "wall_s": wall,
        "worker_kills": kills,
        "server_kills": int(server_killed),
    }


async def main(n: int, workers_n: int, seed: int, limit_s: float) -> None:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="tamma-chaos-") as tmp:
        root = Path(tmp)
        temporal = Temporal(root)
        temporal.start()
        try:
            calm = await phase(root, temporal, n, workers_n, False, rng, limit_s)
            storm = await phase(root, temporal, n, workers_n, True, rng, limit_s)
        finally:
            temporal.kill()
    print(f"issues: {n} per phase, {workers_n} worker processes, seed {seed}")
    print(f"{'phase':<10}{'merged':>8}{'dups':>6}{'wall s':>9}{'worker kills':>14}{'server kills':>14}")
    for name, r in (("no kills", calm), ("chaos", storm)):
        print(
            f"{name:<10}{r['merged']:>5.0f}/{n:<2}{r['duplicates']:>6.0f}{r['wall_s']:>9.1f}"
            f"{r['worker_kills']:>14.0f}{r['server_kills']:>14.0f}"
        )
    ratio = storm["wall_s"] / calm["wall_s"]
    ok = storm["merged"] == n and storm["duplicates"] == 0 and ratio <= 2.0
    verdict = "met" if ok else "NOT met"
    print(f"chaos/no-kill wall time: {ratio:.2f}x; goal (all merged, no duplicate, <= 2x): {verdict}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--issues", type=int, default=40)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--limit-s", type=float, default=600, help="the chaos phase gives up after this long")
    args = parser.parse_args()
    asyncio.run(main(args.issues, args.workers, args.seed, args.limit_s))
