"""A worker whose disk cannot take a heavy step (full, read-only) takes itself out of the heavy
queue and the step runs on another worker: no task is lost to a black hole."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest
from temporalio.client import Client

from tamma.config import Settings
from tamma.demo import make_demo
from tamma.models import TaskStatus
from tamma.runtime.disk import unusable
from tamma.runtime.tasks import TaskService
from tamma.runtime.wiring import build_activities
from tests.conftest import running_worker
from tests.workflows.test_issue_workflow import demo_input


@pytest.fixture
def small_disk(tmp_path: Path) -> Path:
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_the_check_sees_a_full_and_a_read_only_disk(small_disk: Path) -> None:
    assert unusable([small_disk / "work"], 1, 10) is None
    (small_disk / "fill").write_bytes(b"x" * (3_600_000))
    assert "below worker.min_free_mb" in (unusable([small_disk / "work"], 1, 10) or "")
    (small_disk / "fill").unlink()
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    assert "is not writable" in (unusable([small_disk / "work"], 0, 0) or "")
    subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)


async def test_six_tasks_merge_although_one_worker_s_disk_is_full(
    client: Client, task_queue: str, settings: Settings, tmp_path: Path, small_disk: Path
) -> None:
    service = TaskService(client, task_queue)
    sick_settings = Settings.model_validate(settings.model_dump() | {"worker": {**settings.worker.model_dump(), "min_free_mb": 1}})
    sick = build_activities(sick_settings)
    sick.config.work_dir, sick.config.envs_dir = small_disk / "work", small_disk / "envs"
    (small_disk / "fill").write_bytes(b"x" * 3_600_000)  # the disk is full before any heavy step
    wids = []
    async with running_worker(client, task_queue, sick, sick_settings):
        for i in range(6):
            platform, issue = make_demo(tmp_path / f"repo{i}", settings.data_dir)
            wid, _ = await service.start(demo_input(platform, issue, settings))
            wids.append(wid)
        # the sick worker is the only one: its first heavy step finds the disk full, is handed
        # back, and the worker stops polling for heavy steps
        reasons: list[str] = []
        stop_polling = sick.on_sick
        assert stop_polling is not None  # wired by build_workers
        sick.on_sick = lambda why: (reasons.append(why), stop_polling(why))[1]
        for _ in range(300):
            if reasons:
                break
            await asyncio.sleep(0.1)
        assert reasons and "below worker.min_free_mb" in reasons[0]
        # a second, healthy worker (its own connection, as a second process would have)
        other = await Client.connect(client.service_client.config.target_host, data_converter=client.data_converter)
        async with running_worker(other, task_queue, build_activities(settings), settings):
            states = await asyncio.gather(*(service.result(w) for w in wids))
    assert [s.status for s in states] == [TaskStatus.MERGED] * 6, [s.error for s in states]
