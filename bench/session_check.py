"""What checking a refresh session on authenticated requests costs, all on 127.0.0.1.

    python bench/session_check.py [--requests 300]

One Temporal dev server (in memory) and the real API on a socket (uvicorn, in this process).
`GET /api/v1/config` (operator) at concurrency 1 and 16 with:
  * baseline: a plain token (`tamma token create`: no session, nothing looked up);
  * a session's access token with the default api.session_check_s (15 s: one workflow describe
    per session per 15 s on this replica);
  * a session's access token with api.session_check_s = 0 (a describe on every request: the cost
    of "refused at once everywhere", for comparison).
Prints p50, p99 and req/s per case and the ratios against the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from dev_server import start_dev_server  # noqa: E402

from tamma.api.app import create_app  # noqa: E402
from tamma.api.server import server_options  # noqa: E402
from tamma.config import Settings  # noqa: E402
from tamma.runtime.sessions import open_session, session_worker  # noqa: E402
from tamma.tokens import create_token  # noqa: E402

SECRET = "bench-secret-of-sufficient-length-0123456789"


class Api:
    """The real app on a real socket, in a thread of this process (stopped on exit)."""

    def __init__(self, settings: Settings) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(create_app(settings), log_level="error", lifespan="on", **server_options())
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> Api:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline:
                raise SystemExit("the API server did not start within 30 s")
            time.sleep(0.02)
        return self

    def __exit__(self, *_: Any) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        self.sock.close()


async def measure(url: str, token: str, n: int, concurrency: int) -> tuple[list[float], float]:
    latencies: list[float] = []
    gate = asyncio.Semaphore(concurrency)
    headers = {"authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=httpx.Limits(max_connections=concurrency)) as http:
        assert (await http.get("/api/v1/config", headers=headers)).status_code == 200  # warm, and allowed

        async def one() -> None:
            async with gate:
                t = time.perf_counter()
                r = await http.get("/api/v1/config", headers=headers)
                latencies.append(time.perf_counter() - t)
                if r.status_code != 200:
                    raise SystemExit(f"GET /api/v1/config answered {r.status_code}: {r.text[:200]}")

        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        return latencies, n / (time.perf_counter() - started)


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory(prefix="tamma-bench-") as tmp:
        env = await start_dev_server()
        try:
            results: dict[tuple[str, int], tuple[list[float], float]] = {}
            for check_s in (15, 0):
                settings = Settings(
                    data_dir=Path(tmp) / "data",
                    temporal={"address": env.client.service_client.config.target_host, "task_queue": "bench-sessions"},
                    api={"jwt_secret": SECRET, "rate_limit_per_min": 1_000_000, "session_check_s": check_s},
                )
                async with session_worker(env.client, settings):
                    pair = await open_session(env.client, settings, "bench", "operator")
                    plain = create_token(settings.api, "bench", "operator", 3600)
                    with Api(settings) as api:
                        for concurrency in (1, 16):
                            if check_s == 15:
                                results[("plain token (baseline)", concurrency)] = await measure(
                                    api.url, plain, n, concurrency
                                )
                            name = f"session token, session_check_s={check_s}"
                            results[(name, concurrency)] = await measure(api.url, pair.access_token, n, concurrency)
        finally:
            await env.shutdown()
    print(f"GET /api/v1/config, {n} requests per case, one API process, one Temporal dev server")
    print(f"{'case':42} {'conc':>4} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'p50 ×':>6} {'req/s ×':>8}")
    for (name, concurrency), (lat, rate) in results.items():
        base_lat, base_rate = results[("plain token (baseline)", concurrency)]
        print(
            f"{name:42} {concurrency:>4} {p(lat, 50):8.2f} {p(lat, 99):8.2f} {rate:8.0f} "
            f"{p(lat, 50) / p(base_lat, 50):6.2f} {rate / base_rate:8.2f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    asyncio.run(main(max(20, min(args.requests, 5000))))
