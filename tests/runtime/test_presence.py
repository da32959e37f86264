"""Worker presence: one answer to "will a worker run this task?", from worker heartbeats, so a
killed worker is gone in seconds — while Temporal's poller list still shows it for minutes."""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from tamma.config import Settings
from tamma.models import IssueTaskInput, RepoRef
from tamma.runtime.presence import FRESH, presence
from tamma.runtime.tasks import TaskService
from tamma.runtime.wiring import build_activities
from tamma.workflows.issue import IssueWorkflow
from tests.conftest import eventually, running_worker
from tests.runtime.test_worker_process import start_worker_process


async def test_a_killed_worker_is_gone_in_seconds_though_temporal_still_lists_its_polls(
    client: Client, settings: Settings, tmp_path: Path
) -> None:
    queue = settings.temporal.task_queue
    assert not (await presence(client, queue)).serving
    none = (await presence(client, queue)).waiting()
    assert none.startswith(f"waiting for a worker — none polling {queue!r} (none seen)") and "tamma worker" in none
    worker = start_worker_process(settings, "true", tmp_path / "worker.log")
    try:
        served = await eventually(lambda: presence(client, queue), lambda p: p.serving, timeout_s=30)
        assert any(f"tamma-worker-{worker.pid}@" in who for who in served.identities())
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        killed_at = time.monotonic()
        gone = await eventually(lambda: presence(client, queue), lambda p: not p.serving, timeout_s=30)
        took = time.monotonic() - killed_at
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    # the freshness window plus one heartbeat, not the minutes of the poller history
    print(f"\nthe killed worker was gone from presence {took:.1f} s after SIGKILL")
    assert took <= FRESH.total_seconds() + 4, (took, gone.seen)
    assert f"none polling {queue!r} since " in gone.waiting(), gone.seen
    pollers = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    assert any(f"tamma-worker-{worker.pid}@" in p.identity for p in pollers.pollers)  # what fooled the old check


async def test_a_worker_that_exits_is_gone_at_once_and_status_says_why_without_waiting(
    client: Client, settings: Settings
) -> None:
    queue = settings.temporal.task_queue
    service = TaskService(client, queue)
    async with running_worker(client, queue, build_activities(settings), settings):
        assert (await eventually(lambda: presence(client, queue), lambda p: p.serving, timeout_s=15)).serving
    assert not (await presence(client, queue)).serving  # a graceful exit reports its shutdown
    # a task that no worker will run: its state says so at once, instead of a query that times out
    wid = f"presence-{uuid.uuid4().hex[:8]}"
    inp = IssueTaskInput(repo=RepoRef(platform="local", locator=str(settings.data_dir)), issue_number=1)
    await client.start_workflow(IssueWorkflow.run, inp, id=wid, task_queue=queue)
    started = time.monotonic()
    state = await service.state(wid)
    assert time.monotonic() - started < 5  # the query's own timeout is 5 s: it was not waited for
    assert state.note.startswith("waiting for a worker — none polling") and queue in state.note
    await client.get_workflow_handle(wid).terminate("test over")


async def test_presence_does_not_guess_when_temporal_does_not_answer() -> None:
    from tests.ports import free_port

    dead = await Client.connect(f"127.0.0.1:{free_port()}", lazy=True)  # nothing listens there
    seen = await presence(dead, "q", timeout_s=0.5)
    assert seen.unknown and not seen.serving and not seen.seen
    assert seen.waiting().startswith("cannot tell whether a worker is running: Temporal did not answer")


def test_workers_of_another_version_are_named() -> None:
    from datetime import UTC, datetime

    from tamma.runtime.presence import Presence, Seen, build_of

    now = datetime.now(UTC)
    seen = (
        Seen("tamma-worker-1@a v0.2.0 cfg:abc", "q", now, True, "heartbeat"),
        Seen("tamma-worker-2@b v0.1.0 cfg:abc", "q", now, True, "heartbeat"),
        Seen("tamma-worker-3@c v0.0.9 cfg:abc", "q", now, False, "heartbeat"),  # gone: not counted
        Seen("some-other-sdk-worker", "q", now, True, "poller"),  # no version: not judged
    )
    assert build_of("tamma-worker-1@a v0.2.0 cfg:abc") == "0.2.0" and build_of("x@y") == ""
    assert Presence(("q",), seen).other_builds("0.2.0") == ["tamma-worker-2@b v0.1.0"]
