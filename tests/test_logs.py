"""One logging setup: JSON lines with a timestamp and the context a line was written in (the
task, its activity and attempt, a webhook delivery), secrets redacted, a human format on a TTY."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from temporalio.client import Client

from tamma.activities import IssueActivities
from tamma.config import Settings
from tamma.logs import bound, configure
from tamma.models import Issue, IssueTaskInput, TaskStatus
from tamma.platforms.local import LocalPlatform
from tamma.providers.scripted import DEMO_TRANSCRIPT
from tamma.runtime.tasks import TaskService
from tests.conftest import running_worker
from tests.ports import free_port


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    out = io.StringIO()
    root, ours = logging.getLogger(), logging.getLogger("tamma")
    levels = root.level, ours.level
    handler = configure("debug", "json", secrets=["sk-FAKE-log-secret-42"], stream=out)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(levels[0])
        ours.setLevel(levels[1])


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


async def test_a_tasks_activity_lines_carry_its_id_repository_issue_activity_and_attempt(
    captured: io.StringIO,
    client: Client,
    task_queue: str,
    settings: Settings,
    activities: IssueActivities,
    demo: tuple[LocalPlatform, Issue],
) -> None:
    platform, issue = demo
    service = TaskService(client, task_queue)
    opts = settings.task_options(transcript=str(DEMO_TRANSCRIPT))
    async with running_worker(client, task_queue, activities, settings):
        wid, _ = await service.start(IssueTaskInput(repo=platform.repo, issue_number=issue.number, options=opts))
        state = await service.result(wid)
    assert state.status == TaskStatus.MERGED, state.error
    started = [x for x in lines(captured) if x.get("msg") == "step started" and x.get("task") == wid]
    steps = {x["activity"] for x in started}
    assert {"fetch_issue", "analyse", "plan", "implement", "run_tests", "merge"} <= steps, steps
    for x in started:
        assert x["repo"] == platform.repo.key and x["issue"] == issue.number and x["attempt"] == 1
        assert str(x["ts"]).endswith("Z") and x["level"] == "debug" and x["logger"] == "tamma.activity"


def test_bound_context_and_redaction(captured: io.StringIO) -> None:
    log = logging.getLogger("tamma.test")
    with bound(delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958", event="issues"):
        log.warning("token sk-FAKE-log-secret-42 refused")
    log.info("outside")
    inside, outside = lines(captured)[-2:]
    assert inside["delivery"] == "72d3162e-cc78-11e3-81ab-4c9367dc0958" and inside["event"] == "issues"
    assert "sk-FAKE-log-secret-42" not in captured.getvalue() and "refused" in str(inside["msg"])
    assert "delivery" not in outside and outside["level"] == "info"


def test_a_terminal_gets_the_human_format() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    root = logging.getLogger()
    handler = configure("info", "auto", stream=out)
    try:
        with bound(delivery="d-1"):
            logging.getLogger("tamma.test").info("hello")
    finally:
        root.removeHandler(handler)
    line = out.getvalue().strip()
    assert "INFO" in line and "tamma.test: hello" in line and "[delivery=d-1]" in line
    assert not line.startswith("{")


async def test_a_worker_serves_sdk_and_task_metrics_that_move_after_a_run(
    temporal_address: str, task_queue: str, settings: Settings, demo: tuple[LocalPlatform, Issue]
) -> None:
    """A worker's metrics (served on `worker.health_address`): Prometheus from the Temporal runtime —
    the SDK's own worker metrics and Tamma's task, step and model metrics recorded by the workflow."""
    import httpx
    from temporalio.contrib.pydantic import pydantic_data_converter

    from tamma.runtime.client import metrics_runtime
    from tamma.runtime.wiring import build_activities

    port = free_port()  # below the ephemeral range: bound later, by another server
    metered = await Client.connect(
        temporal_address, data_converter=pydantic_data_converter, runtime=metrics_runtime(f"127.0.0.1:{port}")
    )
    platform, issue = demo
    service = TaskService(metered, task_queue)
    opts = settings.task_options(transcript=str(DEMO_TRANSCRIPT))
    async with running_worker(metered, task_queue, build_activities(settings), settings):
        wid, _ = await service.start(IssueTaskInput(repo=platform.repo, issue_number=issue.number, options=opts))
        assert (await service.result(wid)).status == TaskStatus.MERGED
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"http://127.0.0.1:{port}/metrics", timeout=5)).text
    families = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    assert any(f.startswith("temporal_") for f in families), sorted(families)[:20]  # the SDK's own
    finished = [line for line in text.splitlines() if line.startswith("tamma_tasks_finished")]
    assert any('outcome="merged"' in line and line.rstrip().endswith(" 1") for line in finished), finished
    lines = text.splitlines()
    assert any(line.startswith("tamma_step_duration") and 'step="implement"' in line for line in lines)

    def value(prefix: str, *labels: str) -> float:
        found = [ln for ln in lines if ln.startswith(prefix) and all(label in ln for label in labels)]
        assert found, (prefix, labels, sorted(families))
        return sum(float(ln.rsplit(" ", 1)[1]) for ln in found)

    assert value("tamma_tasks_started") == 1
    # one task: its duration, fix iterations and review rounds each recorded once, by outcome
    assert value("tamma_task_duration_count", 'outcome="merged"') == 1
    assert value("tamma_task_duration_bucket", 'le="60000"') <= 1  # the overridden (minutes) buckets
    assert value("tamma_fix_iterations_count", 'outcome="merged"') == 1
    assert value("tamma_fix_iterations_sum", 'outcome="merged"') == 0  # the demo's tests pass at once
    assert value("tamma_review_rounds_count") == 1
    # the task's history size when it ended: bounded (Temporal's hard limit is 51,200 events)
    assert value("tamma_task_history_events_count", 'outcome="merged"') == 1
    assert 20 <= value("tamma_task_history_events_sum", 'outcome="merged"') <= 2000
    assert value("tamma_task_history_events_bucket", 'outcome="merged"', 'le="200"') == 1
    # model calls by provider, model and step (the demo replays a recording)
    model = ('provider="scripted"', 'model="recording"')
    assert value("tamma_llm_calls", *model, 'step="analyse"') >= 1
    assert value("tamma_llm_calls", *model, 'step="implement"') >= 1
    value("tamma_llm_tokens", *model, 'step="plan"')  # present: the demo's recording counts no tokens
