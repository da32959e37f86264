"""Soak: Tamma's whole service under steady, mixed traffic for a set time, all on 127.0.0.1.

    python bench/soak.py [--minutes 60] [--interval 10] [--restart-every 120] [--strict]

For `--minutes`, in one temp dir: a Temporal dev server; a GitHub stand-in (tests/standins, one
bare repository per issue, each the demo project with its bug); `tamma server` and two `python
worker.py` processes (the scripted model replays the demo's recorded answers). Every `--interval`
seconds a new issue is assigned to the bot by a signed webhook, the same delivery is sent again
(GitHub's "redeliver" keeps the delivery id) and the assignment once more under a new delivery id
(a second `assigned` event), beside ignored deliveries (an issue assigned to someone else, a ping);
API viewers list tasks and read one every second; one worker is restarted (SIGTERM, its
replacement started first) every `--restart-every` seconds while the other lives the whole run.
Then traffic stops and the tasks are given `--drain-s` to finish.

Prints: tasks started / merged / failed / unfinished (lost), duplicates (a second pull request or
merge for one issue, a second run of one task), 5xx answers, p50/p99 latency per kind of request,
and each long-lived process's RSS slope (least squares after the first fifth of the run, MB/h).
Goal: 0 lost, 0 duplicated, 0 5xx, RSS slope < 5 MB/h for the server and the long-lived worker.
`--strict` exits 1 when the counts miss the goal (CI runs 5 minutes with it; a slope over minutes
is noise, so CI reports it and does not judge it). Only processes this script started are ended,
by their PID; every loop stops at its deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from temporalio.testing import WorkflowEnvironment

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tamma.config import Settings  # noqa: E402
from tamma.demo import DEMO_BODY, DEMO_TITLE, make_sample_repo  # noqa: E402
from tamma.models import TaskStatus  # noqa: E402
from tamma.providers.scripted import DEMO_TRANSCRIPT  # noqa: E402
from tamma.runtime.embedded import temporal_binary  # noqa: E402
from tamma.tokens import create_token  # noqa: E402
from tamma.workflows import search  # noqa: E402
from tests.standins.git_remote import BareRemote  # noqa: E402
from tests.standins.github_api import FakeGitHub  # noqa: E402
from tests.standins.http import Reply, Request, serve  # noqa: E402

SECRET, TOKEN, BOT, OWNER = "soak-webhook-secret", "ghp_soak", "Codertocat", "soak"
JWT_SECRET = "soak-jwt-secret-0123456789-0123456789-0123456789"
PAYLOAD = json.loads((ROOT / "tests/fixtures/webhooks/github/issues/assigned.json").read_text())


class Forest:
    """Many stand-in repositories behind one GitHub API URL, routed by `/repos/{owner}/{name}`
    (GraphQL by its variables); the stand-in itself holds one repository."""

    def __init__(self) -> None:
        self.repos: dict[str, FakeGitHub] = {}

    def __call__(self, req: Request) -> Reply:
        path = urlsplit(req.path).path
        m = re.match(r"/repos/([^/]+)/([^/]+)", path)
        name = f"{m[1]}/{m[2]}" if m else ""
        if not m and path == "/graphql" and req.raw:
            v = (req.json or {}).get("variables") or {}
            name = f"{v.get('owner')}/{v.get('name')}"
        fake = self.repos.get(name) or next(iter(self.repos.values()))
        return fake(req)


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    codes: dict[str, dict[int, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # no answer at all

    async def call(self, kind: str, http: httpx.AsyncClient, method: str, url: str, **kw: Any) -> httpx.Response | None:
        t = time.perf_counter()
        try:
            r = await http.request(method, url, **kw)
        except httpx.HTTPError:
            self.errors[kind] += 1
            return None
        self.latencies[kind].append(time.perf_counter() - t)
        self.codes[kind][r.status_code] += 1
        return r

    def five_xx(self) -> int:
        return sum(n for codes in self.codes.values() for c, n in codes.items() if c >= 500)


def signed(payload: dict[str, Any], event: str, delivery: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    sig = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "content-type": "application/json",
        "x-github-event": event,
        "x-github-delivery": delivery,
        "x-hub-signature-256": sig,
    }
    return body, headers


def rss_mb(pid: int) -> float | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


def slope_mb_per_h(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) samples, in MB per hour."""
    if len(samples) < 3:
        return float("nan")
    xs, ys = [s[0] for s in samples], [s[1] for s in samples]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return 3600 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else float("nan")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")


class Service:
    """`tamma server` and `python worker.py` processes this script started, and only those."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.env = root, env
        self.procs: list[subprocess.Popen[bytes]] = []
        self.count = 0

    def spawn(self, argv: list[str], name: str) -> subprocess.Popen[bytes]:
        self.count += 1
        log = (self.root / f"{name}-{self.count}.log").open("wb")
        proc = subprocess.Popen(argv, env=self.env, stdout=log, stderr=log, stdin=subprocess.DEVNULL, cwd=self.root)
        self.procs.append(proc)
        return proc

    def worker(self) -> subprocess.Popen[bytes]:
        return self.spawn([sys.executable, str(ROOT / "worker.py")], "worker")

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            self.stop(proc)


async def wait_live(url: str, proc: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(300):
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(f"{url}/live")).status_code == 200:
                    return
            if proc.poll() is not None:
                raise SystemExit(f"tamma server exited with {proc.returncode}")
            await asyncio.sleep(0.1)
    raise SystemExit("tamma server did not answer /live within 30 s")


async def main(args: argparse.Namespace) -> int:
    if args.keep:
        return await soak(Path(tempfile.mkdtemp(prefix="tamma-soak-")), args)
    with tempfile.TemporaryDirectory(prefix="tamma-soak-") as tmp:
        return await soak(Path(tmp), args)


async def soak(root: Path, args: argparse.Namespace) -> int:
    temporal = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()),
        search_attributes=list(search.ALL),
        dev_server_log_level="error",
        ui=False,
    )
    forest = Forest()
    tally = Tally()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    queue = f"soak-{uuid.uuid4().hex[:6]}"
    home = root / "home"
    home.mkdir()
    with serve(forest) as gh:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TAMMA_")}
        env.update(
            HOME=str(home),
            XDG_CONFIG_HOME=str(home / ".config"),
            TAMMA_CONFIG="",
            TAMMA_DATA_DIR=str(root / "data"),
            TAMMA_TEMPORAL__ADDRESS=temporal.client.service_client.config.target_host,
            TAMMA_TEMPORAL__TASK_QUEUE=queue,
            TAMMA_WEBHOOKS__GITHUB_SECRETS=json.dumps([SECRET]),
            TAMMA_WEBHOOKS__BOT_LOGIN=BOT,
            TAMMA_WEBHOOKS__RATE_LIMIT_PER_MIN="1000000",
            TAMMA_API__JWT_SECRET=JWT_SECRET,
            TAMMA_API__RATE_LIMIT_PER_MIN="1000000",
            TAMMA_GITHUB__TOKEN=TOKEN,
            TAMMA_GITHUB__BASE_URL=gh.url,
            TAMMA_GITHUB__GIT_URL=str(root / "git" / "{repo}.git"),
            TAMMA_LLM__TRANSCRIPT=str(DEMO_TRANSCRIPT),
        )
        service = Service(root, env)
        server = service.spawn(
            [sys.executable, "-m", "tamma", "server", "--host", "127.0.0.1", "--port", str(port)], "server"
        )
        steady, restarted = service.worker(), service.worker()
        try:
            await wait_live(url, server)
            viewer = create_token(Settings(api={"jwt_secret": JWT_SECRET}).api, "soak", "viewer", 86_400)
            report = await traffic(args, root, forest, gh.url, url, viewer, tally, service, server, steady, restarted)
        finally:
            service.stop_all()
            await temporal.shutdown()
    if args.keep:
        print(f"kept: {root}")
    return print_report(args, report, tally)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def new_issue(root: Path, forest: Forest, base: str, n: int) -> FakeGitHub:
    name = f"repo-{n}"
    remote = BareRemote.from_worktree(make_sample_repo(root / "src" / name), root / "git" / OWNER / f"{name}.git")
    fake = FakeGitHub(OWNER, name, remote, TOKEN, base=base)
    fake.add_issue(1, DEMO_TITLE, DEMO_BODY)
    forest.repos[fake.full] = fake
    return fake


def outcome(answer: dict[str, Any]) -> str:
    """What a delivery's answer says happened; a redelivery of a seen delivery id is a duplicate."""
    return "duplicate" if answer.get("duplicate") else str(answer.get("outcome"))


def assignment(full: str, to: str = BOT) -> dict[str, Any]:
    p = dict(PAYLOAD)
    p["repository"] = dict(p["repository"], full_name=full)
    p["issue"] = dict(p["issue"], number=1)
    p["assignee"] = dict(p["assignee"], login=to)
    return p


async def traffic(
    args: argparse.Namespace,
    root: Path,
    forest: Forest,
    gh_url: str,
    url: str,
    viewer: str,
    tally: Tally,
    service: Service,
    server: subprocess.Popen[bytes],
    steady: subprocess.Popen[bytes],
    restarted: subprocess.Popen[bytes],
) -> dict[str, Any]:
    started = time.monotonic()
    deadline = started + args.minutes * 60
    tasks: dict[str, str] = {}  # repo full name -> workflow id
    answers: dict[str, list[str]] = defaultdict(list)
    rss: dict[str, list[tuple[float, float]]] = defaultdict(list)
    restarts = 0

    async with httpx.AsyncClient(base_url=url, timeout=30) as http:

        async def deliver(kind: str, payload: dict[str, Any], event: str, delivery: str) -> dict[str, Any]:
            body, headers = signed(payload, event, delivery)
            r = await tally.call(kind, http, "POST", "/webhooks/github", content=body, headers=headers)
            doc: dict[str, Any] = (
                r.json() if r is not None and r.headers.get("content-type", "").startswith("application/json") else {}
            )
            return doc

        async def issues() -> None:
            n = 0
            while time.monotonic() < deadline:
                tick = time.monotonic()
                fake = await asyncio.to_thread(new_issue, root, forest, gh_url, n)
                n += 1
                delivery = str(uuid.uuid4())
                first = await deliver("webhook: starts", assignment(fake.full), "issues", delivery)
                if first.get("task"):
                    tasks[fake.full] = first["task"]
                again = await deliver("webhook: redelivered", assignment(fake.full), "issues", delivery)
                twice = await deliver("webhook: assigned again", assignment(fake.full), "issues", str(uuid.uuid4()))
                answers[fake.full] += [outcome(first), outcome(again), outcome(twice)]
                await deliver("webhook: ignored", assignment(fake.full, "someone-else"), "issues", str(uuid.uuid4()))
                await deliver(
                    "webhook: ignored", {"zen": "Keep it logically awesome.", "hook_id": 1}, "ping", str(uuid.uuid4())
                )
                await asyncio.sleep(max(0.0, args.interval - (time.monotonic() - tick)))

        async def viewers() -> None:
            auth = {"authorization": f"Bearer {viewer}"}
            while time.monotonic() < deadline:
                await tally.call("api: list tasks", http, "GET", "/api/v1/tasks", headers=auth)
                if tasks:
                    wid = list(tasks.values())[-1]
                    await tally.call("api: one task", http, "GET", f"/api/v1/tasks/{quote(wid, safe='')}", headers=auth)
                await asyncio.sleep(1)

        async def restarter() -> None:
            nonlocal restarted, restarts
            next_at = started + args.restart_every
            while next_at < deadline:
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                next_at += args.restart_every
                old, restarted = restarted, service.worker()  # the replacement first: capacity stays
                await asyncio.to_thread(service.stop, old)
                restarts += 1

        async def sampler() -> None:
            while time.monotonic() < deadline + args.drain_s:
                t = time.monotonic() - started
                for name, proc in (("server", server), ("steady worker", steady)):
                    if (mb := rss_mb(proc.pid)) is not None:
                        rss[name].append((t, mb))
                await asyncio.sleep(5)

        sampling = asyncio.create_task(sampler())
        await asyncio.gather(issues(), viewers(), restarter())
        ended = time.monotonic()
        final = await drain(http, viewer, tasks, ended + args.drain_s, tally)
        drained = time.monotonic() - ended
        sampling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampling

    warm = args.minutes * 60 / 5
    duplicates = 0
    for full, fake in forest.repos.items():
        duplicates += max(0, len(fake.pulls) - 1) + max(0, sum(1 for p in fake.pulls.values() if p["merged"]) - 1)
        outcomes = answers.get(full, [])
        duplicates += sum(1 for o in outcomes if o == "started") - (1 if "started" in outcomes else 0)
    return {
        "issues": len(forest.repos),
        "started": len(tasks),
        "final": final,
        "duplicates": duplicates,
        "restarts": restarts,
        "traffic_s": ended - started,
        "drained_s": drained,
        "server_alive": server.poll() is None,
        "steady_alive": steady.poll() is None,
        "rss": {
            name: (s[0][1], s[-1][1], slope_mb_per_h([x for x in s if x[0] >= warm])) for name, s in rss.items() if s
        },
    }


async def drain(
    http: httpx.AsyncClient, viewer: str, tasks: dict[str, str], until: float, tally: Tally
) -> dict[str, str]:
    """Each task's status once it ends (or as it stands at `until`), read through the API."""
    auth = {"authorization": f"Bearer {viewer}"}
    final: dict[str, str] = {}
    ended = {s.value for s in (TaskStatus.MERGED, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.ESCALATED)}
    while time.monotonic() < until:
        for wid in tasks.values():
            if final.get(wid) in ended:
                continue
            r = await tally.call("api: one task", http, "GET", f"/api/v1/tasks/{quote(wid, safe='')}", headers=auth)
            if r is not None and r.status_code == 200:
                final[wid] = r.json().get("status", "?")
        if len(final) == len(tasks) and set(final.values()) <= ended:
            break
        await asyncio.sleep(2)
    return final


def print_report(args: argparse.Namespace, r: dict[str, Any], tally: Tally) -> int:
    statuses = list(r["final"].values())
    merged = statuses.count(TaskStatus.MERGED.value)
    failed = sum(
        1 for s in statuses if s in (TaskStatus.FAILED.value, TaskStatus.ESCALATED.value, TaskStatus.CANCELLED.value)
    )
    lost = r["issues"] - merged - failed
    print(
        f"soak: {args.minutes:g} min of traffic ({r['traffic_s']:.0f} s), an issue every {args.interval:g} s, "
        f"a worker restarted every {args.restart_every:g} s ({r['restarts']} restarts)"
    )
    print(
        f"tasks: {r['issues']} issues assigned, {r['started']} started, {merged} merged, {failed} failed, "
        f"{lost} unfinished or never started (lost); duplicates {r['duplicates']}; "
        f"the last task ended {r['drained_s']:.0f} s after traffic stopped"
    )
    print(f"\n{'requests':<26}{'count':>7}{'5xx':>6}{'no answer':>10}{'p50 ms':>9}{'p99 ms':>9}")
    for kind in sorted(tally.latencies.keys() | tally.errors.keys()):
        codes = tally.codes[kind]
        five = sum(n for c, n in codes.items() if c >= 500)
        lat = tally.latencies[kind]
        print(f"{kind:<26}{len(lat):>7}{five:>6}{tally.errors[kind]:>10}{pct(lat, 0.5):>9.1f}{pct(lat, 0.99):>9.1f}")
    print(f"\n{'process':<16}{'RSS first MB':>13}{'last MB':>9}{'slope MB/h':>12}  (after the first fifth)")
    for name, (first, last, slope) in r["rss"].items():
        print(f"{name:<16}{first:>13.0f}{last:>9.0f}{slope:>12.1f}")
    five_xx, no_answer = tally.five_xx(), sum(tally.errors.values())
    counts_ok = lost == 0 and failed == 0 and r["duplicates"] == 0 and five_xx == 0 and no_answer == 0
    counts_ok = counts_ok and r["server_alive"] and r["steady_alive"] and r["started"] == r["issues"]
    slopes_ok = all(s < 5 for _, _, s in r["rss"].values())
    print(
        f"\ngoal: 0 lost, 0 failed, 0 duplicated, 0 5xx, every delivery answered: {'met' if counts_ok else 'NOT met'}; "
        f"RSS slope < 5 MB/h: {'met' if slopes_ok else 'NOT met'}"
        + (" (a slope over a few minutes is warm-up, not a leak: judge it on 60)" if args.minutes < 30 else "")
    )
    return 0 if counts_ok or not args.strict else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--interval", type=float, default=10, help="seconds between new issues")
    parser.add_argument("--restart-every", type=float, default=120, help="seconds between worker restarts")
    parser.add_argument("--drain-s", type=float, default=300, help="how long the tasks get to finish after traffic")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, repositories) and say where")
    parser.add_argument("--strict", action="store_true", help="exit 1 when the counts miss the goal")
    sys.exit(asyncio.run(main(parser.parse_args())))
