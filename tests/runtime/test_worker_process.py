"""Worker processes: SIGKILL mid-implement loses and duplicates nothing; SIGTERM drains."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client

from tamma.config import Settings
from tamma.models import Issue, IssueTaskInput, StepName, TaskStatus
from tamma.platforms.local import LocalPlatform
from tamma.providers.scripted import DEMO_TRANSCRIPT
from tamma.runtime.tasks import TaskService
from tamma.runtime.wiring import build_activities
from tests.conftest import running_worker
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def slow_tests_command(seconds: int) -> str:
    return f"sleep {seconds}; python3 -m unittest discover"


def start_worker_process(settings: Settings, test_command: str, log: Path) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ,
        TAMMA_TEMPORAL__ADDRESS=settings.temporal.address or "",
        TAMMA_TEMPORAL__TASK_QUEUE=settings.temporal.task_queue,
        TAMMA_DATA_DIR=str(settings.data_dir),
        TAMMA_AGENT__TEST_COMMAND=test_command,
        TAMMA_WORKER__GRACEFUL_SHUTDOWN_S="20",
    )
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "worker.py")],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while "worker polling" not in log.read_text(errors="replace"):
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "worker did not start"
        time.sleep(0.1)
    return proc


async def wait_until_implementing(service: TaskService, wid: str) -> None:
    """Until a worker has actually started the implement activity (not merely scheduled it)."""
    for _ in range(600):
        desc = await service.handle(wid).describe()
        started = [
            a
            for a in desc.raw_description.pending_activities
            if a.activity_type.name == "implement" and a.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
        ]
        if started:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("implement never started")


def git_lines(platform: LocalPlatform, *args: str) -> list[str]:
    out = subprocess.run(["git", "-C", str(platform.path), *args], capture_output=True, text=True, check=True)
    return out.stdout.split()


async def test_sigkill_during_implement_then_second_worker_finishes_once(
    client: Client, task_queue: str, settings: Settings, demo: tuple[LocalPlatform, Issue], tmp_path: Path
) -> None:
    platform, issue = demo
    command = slow_tests_command(3)
    proc = start_worker_process(settings, command, tmp_path / "worker-a.log")
    service = TaskService(client, task_queue)
    opts = settings.task_options(transcript=str(DEMO_TRANSCRIPT), heartbeat_timeout_s=2, retry_initial_s=0.1)
    try:
        wid, _ = await service.start(IssueTaskInput(repo=platform.repo, issue_number=issue.number, options=opts))
        await wait_until_implementing(service, wid)
        await asyncio.sleep(1.0)  # inside the agent's sandboxed test run
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
    assert platform.list_pull_requests() == []  # the kill landed before anything was pushed
    second = settings.model_copy(update={"agent": settings.agent.model_copy(update={"test_command": command})})
    async with running_worker(client, task_queue, build_activities(second), second):
        state = await asyncio.wait_for(service.result(wid), timeout=120)
    assert state.status == TaskStatus.MERGED, state.error
    assert git_lines(platform, "branch", "--list", "tamma/*", "--format=%(refname:short)") == ["tamma/issue-1"]
    assert len(platform.list_pull_requests()) == 1
    # Exactly one implement commit: the killed attempt pushed nothing, the retry pushed once.
    assert len(git_lines(platform, "rev-list", "main^1..tamma/issue-1")) == 1


async def test_sigterm_lets_in_flight_activity_finish_then_exits_zero(
    client: Client, task_queue: str, settings: Settings, demo: tuple[LocalPlatform, Issue], tmp_path: Path
) -> None:
    platform, issue = demo
    command = slow_tests_command(2)
    proc = start_worker_process(settings, command, tmp_path / "worker.log")
    service = TaskService(client, task_queue)
    opts = settings.task_options(transcript=str(DEMO_TRANSCRIPT), heartbeat_timeout_s=10)
    try:
        wid, _ = await service.start(IssueTaskInput(repo=platform.repo, issue_number=issue.number, options=opts))
        await wait_until_implementing(service, wid)
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0
    # The in-flight implement finished and pushed before the worker exited.
    assert len(git_lines(platform, "rev-list", "main..tamma/issue-1")) == 1
    second = settings.model_copy(update={"agent": settings.agent.model_copy(update={"test_command": command})})
    async with running_worker(client, task_queue, build_activities(second), second):
        state = await asyncio.wait_for(service.result(wid), timeout=120)
    assert state.status == TaskStatus.MERGED
    implement = [s for s in state.steps if s.name == StepName.IMPLEMENT]
    assert len(implement) == 1 and "(reused)" not in implement[0].detail


def probe(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_a_worker_started_before_temporal_waits_for_it_then_serves(tmp_path: Path) -> None:
    """Compose or Kubernetes start workers and Temporal together: a worker whose server is not
    listening yet says so, waits with backoff — live but not ready on its health endpoint — and
    serves once it is (ready, metrics of the SDK and its own); SIGTERM still ends it."""
    from tamma.runtime.embedded import search_attribute_flags, temporal_binary

    port = free_port()  # below the ephemeral range: bound later, by another server
    health = f"http://127.0.0.1:{free_port()}"
    log = tmp_path / "early-worker.log"
    env = dict(
        {k: v for k, v in os.environ.items() if not k.startswith("TAMMA_")},
        TAMMA_TEMPORAL__ADDRESS=f"127.0.0.1:{port}",
        TAMMA_TEMPORAL__CONNECT_TIMEOUT_S="1",
        TAMMA_DATA_DIR=str(tmp_path / "data"),
        TAMMA_WORKER__HEALTH_ADDRESS=health.removeprefix("http://"),
    )
    worker = subprocess.Popen(
        [sys.executable, str(ROOT / "worker.py")], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    server: subprocess.Popen[bytes] | None = None
    try:
        deadline = time.monotonic() + 30
        while "retrying in" not in log.read_text(errors="replace"):
            assert worker.poll() is None, f"the worker gave up: {log.read_text()}"
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        assert "cannot reach Temporal" in log.read_text() and "Traceback" not in log.read_text()
        assert probe(f"{health}/live")[0] == 200
        status, body = probe(f"{health}/ready")
        assert status == 503 and json.loads(body)["phase"] == "waiting", body
        assert "waiting for Temporal" in json.loads(body)["detail"]
        argv = [str(temporal_binary()), "server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", str(port)]
        server = subprocess.Popen(
            [*argv, "--log-level", "error", *search_attribute_flags()],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while "worker polling" not in log.read_text(errors="replace"):
            assert worker.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"the worker never connected: {log.read_text()}"
            time.sleep(0.2)
        status, body = probe(f"{health}/ready")
        assert status == 200 and json.loads(body)["temporal"]["reachable"] is True, body
        status, metrics = probe(f"{health}/metrics")
        assert status == 200 and "tamma_worker_ready 1.0" in metrics
        assert "temporal_worker_task_slots_available" in metrics or "temporal_num_pollers" in metrics, metrics[:2000]
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=40) == 0
    finally:
        for proc in (worker, server):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
