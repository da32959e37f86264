"""Faults cost seconds: a worker killed in the middle of a light step (a forge call that hangs)
is noticed by its missing heartbeat and the step moves to another worker within seconds, not
after the step's start-to-close timeout of minutes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from temporalio.client import Client

from tamma.config import Settings
from tamma.models import IssueTaskInput, RepoRef, StepName, TaskStatus
from tamma.providers.scripted import DEMO_TRANSCRIPT
from tamma.runtime.tasks import TaskService
from tamma.runtime.wiring import build_activities
from tests.conftest import running_worker
from tests.standins.github_api import FakeGitHub
from tests.standins.http import Reply
from tests.workflows.test_forges import TOKEN, github_standin

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


async def test_a_worker_killed_in_a_light_step_costs_seconds(
    client: Client, task_queue: str, settings: Settings, tmp_path: Path
) -> None:
    with github_standin(tmp_path, settings, "faults") as (fake, s):
        fake.inject.append(("GET .*/issues/1$", Reply(200, {}, delay_s=120)))  # the first fetch hangs
        env = {k: v for k, v in os.environ.items() if not k.startswith("TAMMA_")}
        env.update(
            TAMMA_TEMPORAL__ADDRESS=s.temporal.address or "",
            TAMMA_TEMPORAL__TASK_QUEUE=task_queue,
            TAMMA_DATA_DIR=str(s.data_dir),
            TAMMA_GITHUB__TOKEN=TOKEN,
            TAMMA_GITHUB__BASE_URL=s.github.base_url,
            TAMMA_GITHUB__GIT_URL=s.github.git_url or "",
        )
        log = tmp_path / "doomed-worker.log"
        doomed = subprocess.Popen(  # noqa: ASYNC220 (a process this test kills by its PID)
            [sys.executable, str(ROOT / "worker.py")], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 60
            while "worker polling" not in log.read_text(errors="replace"):
                assert doomed.poll() is None and time.monotonic() < deadline, log.read_text()
                await asyncio.sleep(0.1)
            service = TaskService(client, task_queue)
            opts = s.task_options(transcript=str(DEMO_TRANSCRIPT), retry_initial_s=0.2, heartbeat_timeout_s=3)
            repo = RepoRef(platform="github", locator="octo/faults")
            wid, _ = await service.start(IssueTaskInput(repo=repo, issue_number=1, options=opts))
            while not any(path.endswith("/issues/1") for _, path, _ in fake.log):
                assert time.monotonic() < deadline, "the doomed worker never fetched the issue"
                await asyncio.sleep(0.05)
            doomed.send_signal(signal.SIGKILL)  # in the middle of the hanging forge call
            doomed.wait(timeout=10)
            killed_at = time.monotonic()
        finally:
            if doomed.poll() is None:
                doomed.kill()
                doomed.wait()
        async with running_worker(client, task_queue, build_activities(s), s):
            state = await service.result(wid)
            recovered_s = time.monotonic() - killed_at
    assert state.status == TaskStatus.MERGED, state.error
    fetch = next(r for r in state.steps if r.name == StepName.FETCH)
    assert fetch.status == "done"
    # The whole issue (fetch retried elsewhere, then everything else) finished within seconds of
    # the kill; before, the fetch alone waited out a 300 s start-to-close timeout.
    print(f"recovered {recovered_s:.1f}s after the kill")
    assert recovered_s < 30, recovered_s
    assert sum(1 for _, path, _ in fake.log if path.endswith("/issues/1")) >= 2  # it was retried
    assert isinstance(fake, FakeGitHub)
