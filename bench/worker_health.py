"""A worker's health endpoint under load: how fast /ready and /metrics answer while the worker
runs issues (coding steps, sandboxed test runs) against the same endpoint idle, in one run.

    python bench/worker_health.py [--issues 12] [--probes 200]

Starts a Temporal dev server and one worker process (`python worker.py`, its health endpoint on
loopback), probes /ready --probes times idle, then again while --issues demo issues run to a
merge through that worker, and prints p50/p99/max latency for both and their ratio.
Goal: /ready under 100 ms at p99 under load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from dev_server import start_dev_server  # noqa: E402

from tamma.config import Settings  # noqa: E402
from tamma.demo import make_demo  # noqa: E402
from tamma.models import IssueTaskInput, TaskStatus  # noqa: E402
from tamma.providers.scripted import DEMO_TRANSCRIPT  # noqa: E402
from tamma.runtime.tasks import TaskService  # noqa: E402


#: probes /ready every 20 ms and /metrics every 100 ms until SIGINT; prints the latencies (ms) as JSON
PROBER = """
import json, signal, sys, time, urllib.request
base, times, stop = sys.argv[1], {"/ready": [], "/metrics": []}, []
signal.signal(signal.SIGINT, lambda *_: stop.append(1))
i = 0
while not stop:
    for path in ("/ready",) + (("/metrics",) if i % 5 == 0 else ()):
        t0 = time.perf_counter()
        with urllib.request.urlopen(base + path, timeout=5) as answer:
            answer.read()
        times[path].append((time.perf_counter() - t0) * 1000)
    i += 1
    time.sleep(0.02)
print(json.dumps(times))
"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def probe(http: httpx.AsyncClient, path: str, n: int, stop: asyncio.Event | None = None) -> list[float]:
    times: list[float] = []
    for _ in range(n):
        if stop is not None and stop.is_set():
            break
        t0 = time.perf_counter()
        answer = await http.get(path)
        times.append((time.perf_counter() - t0) * 1000)
        assert answer.status_code == 200, answer.text
        await asyncio.sleep(0.02)
    return times


def report(name: str, idle: list[float], busy: list[float]) -> None:
    print(
        f"{name:9} idle p50 {statistics.median(idle):6.1f} ms  p99 {pct(idle, 0.99):6.1f} ms | "
        f"under load p50 {statistics.median(busy):6.1f} ms  p99 {pct(busy, 0.99):6.1f} ms  "
        f"max {max(busy):6.1f} ms | p99 ratio {pct(busy, 0.99) / max(pct(idle, 0.99), 1e-6):.1f}x"
    )


async def main(issues: int, probes: int) -> None:
    with tempfile.TemporaryDirectory(prefix="tamma-bench-health-") as tmp:
        root = Path(tmp)
        env = await start_dev_server()
        queue = f"bench-{uuid.uuid4().hex[:8]}"
        address = env.client.service_client.config.target_host
        with socket_port() as port:
            health = f"127.0.0.1:{port}"
        worker_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("TAMMA_")},
            "TAMMA_TEMPORAL__ADDRESS": address,
            "TAMMA_TEMPORAL__TASK_QUEUE": queue,
            "TAMMA_DATA_DIR": str(root / "data"),
            "TAMMA_WORKER__HEALTH_ADDRESS": health,
            "TAMMA_LOGGING__LEVEL": "warning",
        }
        log = (root / "worker.log").open("wb")
        worker = subprocess.Popen([sys.executable, str(ROOT / "worker.py")], env=worker_env, stdout=log, stderr=log)
        try:
            async with httpx.AsyncClient(base_url=f"http://{health}", timeout=5) as http:
                for _ in range(300):
                    try:
                        if (await http.get("/ready")).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    await asyncio.sleep(0.1)
                idle_ready = await probe(http, "/ready", probes)
                idle_metrics = await probe(http, "/metrics", max(20, probes // 5))
                settings = Settings(data_dir=root / "data", temporal={"address": address, "task_queue": queue})
                repos = [make_demo(root / f"repo-{i}", settings.data_dir) for i in range(issues)]
                service = TaskService(env.client, queue)
                options = settings.task_options(transcript=str(DEMO_TRANSCRIPT))
                stop = asyncio.Event()

                async def one(i: int) -> None:
                    platform, issue = repos[i]
                    wid, _ = await service.start(
                        IssueTaskInput(repo=platform.repo, issue_number=issue.number, options=options)
                    )
                    state = await service.result(wid)
                    assert state.status == TaskStatus.MERGED, state.error

                async def load() -> float:
                    t0 = time.perf_counter()
                    await asyncio.gather(*(one(i) for i in range(issues)))
                    stop.set()
                    return time.perf_counter() - t0

                # the prober under load is a process of its own: this one is busy driving the load
                prober = await asyncio.create_subprocess_exec(
                    sys.executable, "-c", PROBER, f"http://{health}", stdout=asyncio.subprocess.PIPE
                )
                loaded = await load()
                assert prober.stdin is None
                prober.send_signal(signal.SIGINT)
                out, _ = await prober.communicate()
                times = json.loads(out)
                busy_ready, busy_metrics = times["/ready"], times["/metrics"]
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=60)
            await env.shutdown()
        print(f"{issues} issues merged through one worker in {loaded:.1f} s; "
              f"{len(busy_ready)} /ready and {len(busy_metrics)} /metrics probes meanwhile")
        report("/ready", idle_ready, busy_ready)
        report("/metrics", idle_metrics, busy_metrics)
        print(f"goal: /ready p99 under load < 100 ms: {'met' if pct(busy_ready, 0.99) < 100 else 'NOT met'}")


class socket_port:
    """A free loopback port for the worker to bind (closed before it does)."""

    def __enter__(self) -> int:
        import socket

        self.s = socket.socket()
        self.s.bind(("127.0.0.1", 0))
        return int(self.s.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self.s.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--issues", type=int, default=12)
    parser.add_argument("--probes", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.issues, args.probes))
