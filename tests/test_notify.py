"""Notifications for other systems: a signed JSON webhook and a Slack message when a task
changes state, sent from an activity — a receiver that fails is retried, never failing the task."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

from pydantic import SecretStr
from temporalio.client import Client

from tamma.config import Settings
from tamma.config.schema import NotifySettings
from tamma.demo import make_demo
from tamma.models import IssueTaskInput, TaskStatus
from tamma.providers.scripted import DEMO_TRANSCRIPT
from tamma.runtime.tasks import TaskService
from tamma.runtime.wiring import build_activities
from tests.conftest import running_worker
from tests.standins.http import Reply, Request, serve

SECRET = "notify-FAKE-secret"


async def test_a_merged_task_is_announced_signed_and_to_slack_despite_a_failing_receiver(
    client: Client, task_queue: str, settings: Settings, tmp_path: Path
) -> None:
    received: list[Request] = []

    def receiver(req: Request) -> Reply:
        received.append(req)
        if len(received) == 1:
            return Reply(503, {"error": "down for a moment"})  # retried, not lost
        return Reply(200, {"ok": True})

    slack: list[Request] = []
    with serve(receiver) as hook, serve(lambda r: (slack.append(r), Reply(200, "ok"))[1]) as chat:
        s = settings.model_copy(
            update={
                "notify": NotifySettings(
                    webhook_url=hook.url + "/tamma",
                    webhook_secret=SecretStr(SECRET),
                    slack_webhook_url=SecretStr(chat.url + "/services/T000/B000/XXXX"),
                    on=["merged"],
                )
            }
        )
        platform, issue = make_demo(tmp_path / "repo", s.data_dir)
        service = TaskService(client, task_queue)
        opts = s.task_options(transcript=str(DEMO_TRANSCRIPT), retry_initial_s=0.1)
        assert opts.notify_on == ["merged"]
        async with running_worker(client, task_queue, build_activities(s), s):
            wid, _ = await service.start(IssueTaskInput(repo=platform.repo, issue_number=issue.number, options=opts))
            state = await service.result(wid)
    assert state.status == TaskStatus.MERGED, state.error
    assert len(received) == 2  # one refused with 503, then delivered
    first, delivered = received
    assert first.raw == delivered.raw and first.headers["x-tamma-delivery"] == delivered.headers["x-tamma-delivery"]
    expected = "sha256=" + hmac.new(SECRET.encode(), delivered.raw, hashlib.sha256).hexdigest()
    assert delivered.headers["x-tamma-signature-256"] == expected
    event = json.loads(delivered.raw)
    assert (event["task"], event["status"], event["issue"]) == (wid, "merged", issue.number)
    assert event["pull_request"] and delivered.headers["x-tamma-event"] == "task.merged"
    assert SECRET not in delivered.raw.decode()
    # the Slack webhook got the gist (sent once the signed webhook had taken the event)
    assert len(slack) >= 1 and "is *merged*" in json.loads(slack[-1].raw)["text"]


async def test_no_notification_is_configured_no_activity_runs(
    client: Client, task_queue: str, settings: Settings, tmp_path: Path
) -> None:
    platform, issue = make_demo(tmp_path / "repo", settings.data_dir)
    service = TaskService(client, task_queue)
    opts = settings.task_options(transcript=str(DEMO_TRANSCRIPT))
    assert opts.notify_on == []
    async with running_worker(client, task_queue, build_activities(settings), settings):
        wid, _ = await service.start(IssueTaskInput(repo=platform.repo, issue_number=issue.number, options=opts))
        assert (await service.result(wid)).status == TaskStatus.MERGED
    history = await service.handle(wid).fetch_history()
    scheduled = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert "notify" not in scheduled
