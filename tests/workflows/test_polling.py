"""Missed webhooks are caught: Temporal Schedules poll each configured repository and start a
task for every open issue that is Tamma's and has none — under the webhook's own workflow id."""

from __future__ import annotations

from pathlib import Path

from temporalio.client import Client

from tamma.config import LLMSettings, Settings
from tamma.demo import DEMO_BODY, DEMO_TITLE, make_demo
from tamma.models import IssueTaskInput, PollResult, TaskStatus
from tamma.providers.scripted import DEMO_TRANSCRIPT
from tamma.runtime.polling import PREFIX, schedule_id, sync_schedules
from tamma.runtime.tasks import TaskService
from tamma.runtime.wiring import build_activities
from tamma.workflows import search
from tests.conftest import eventually, keep_history, running_worker


def polling_settings(settings: Settings, *repos: str, **polling: object) -> Settings:
    return settings.model_copy(
        update={
            "llm": LLMSettings(provider="scripted", transcript=DEMO_TRANSCRIPT),
            "polling": settings.polling.model_copy(update={"repositories": list(repos), **polling}),
        }
    )


async def _drop_schedules(client: Client) -> None:
    async for s in await client.list_schedules():
        if s.id.startswith(PREFIX):
            await client.get_schedule_handle(s.id).delete()


async def test_an_issue_labelled_while_the_server_was_down_is_picked_up_by_polling_once(
    client: Client, task_queue: str, settings: Settings, tmp_path: Path
) -> None:
    """The server set the schedule up and went away; an issue is labelled for Tamma and its
    webhook is never delivered. The schedule fires on its own (local: every 5 s), the task runs
    to merged; later polls and a late webhook start nothing more."""
    platform, demo = make_demo(tmp_path / "repo", settings.data_dir)  # #1: not Tamma's (no label)
    s = polling_settings(settings, f"local:{platform.path}", local_interval_s=2)
    await _drop_schedules(client)
    assert await sync_schedules(client, s) == [schedule_id(task_queue, platform.repo)]
    labelled = platform.create_issue(DEMO_TITLE, DEMO_BODY, author="alice", labels=["tamma"])
    service = TaskService(client, task_queue)
    wid = search.workflow_id(platform.repo.key, labelled.number)
    try:
        async with running_worker(client, task_queue, build_activities(s), s):
            # no server, no webhook, no trigger: only the schedule
            found = await eventually(lambda: service.exists(wid), bool, timeout_s=30)
            assert found, "the schedule never started a task for the labelled issue"
            state = await service.result(wid)
            assert state.status == TaskStatus.MERGED, state.error
            # more polls come and go; a late webhook attaches to nothing new
            desc = await client.get_schedule_handle(schedule_id(task_queue, platform.repo)).describe()
            fired = desc.info.num_actions
            await eventually(
                lambda: client.get_schedule_handle(schedule_id(task_queue, platform.repo)).describe(),
                lambda d: d.info.num_actions >= fired + 1,
                timeout_s=15,
            )
            inp = IssueTaskInput(repo=platform.repo, issue_number=labelled.number, options=s.task_options())
            assert not await service.ensure_started(inp)
        runs = [w async for w in client.list_workflows(f"WorkflowId = '{wid}'")]
        assert len(runs) == 1  # one task, whatever the number of polls
        assert not await service.exists(search.workflow_id(platform.repo.key, demo.number))  # never Tamma's
        recent = desc.info.recent_actions
        assert recent and all(a.action.workflow_id.startswith(PREFIX) for a in recent)
        await keep_history(client, recent[0].action.workflow_id, "poll")
    finally:
        await _drop_schedules(client)


async def test_a_poll_starts_only_what_no_webhook_started(
    client: Client, task_queue: str, settings: Settings, tmp_path: Path
) -> None:
    platform, _ = make_demo(tmp_path / "repo", settings.data_dir)
    first = platform.create_issue(DEMO_TITLE, DEMO_BODY, labels=["tamma"])
    second = platform.create_issue(DEMO_TITLE, DEMO_BODY, labels=["Tamma"])  # labels match case-blind
    s = polling_settings(settings, f"local:{platform.path}", local_interval_s=3600)
    service = TaskService(client, task_queue)
    await _drop_schedules(client)
    try:
        await sync_schedules(client, s)
        async with running_worker(client, task_queue, build_activities(s), s):
            # the webhook for `first` did arrive
            inp = IssueTaskInput(repo=platform.repo, issue_number=first.number, options=s.task_options())
            assert await service.ensure_started(inp)
            handle = client.get_schedule_handle(schedule_id(task_queue, platform.repo))
            await handle.trigger()
            desc = await eventually(handle.describe, lambda d: bool(d.info.recent_actions), timeout_s=15)
            run = client.get_workflow_handle(desc.info.recent_actions[-1].action.workflow_id)
            result = PollResult.model_validate(await run.result())
            assert result.candidates == [first.number, second.number]
            assert result.started == [second.number]
            for n in (first.number, second.number):
                state = await service.result(search.workflow_id(platform.repo.key, n))
                assert state.status == TaskStatus.MERGED, state.error
    finally:
        await _drop_schedules(client)


async def test_schedules_follow_the_settings(
    client: Client, task_queue: str, settings: Settings, tmp_path: Path
) -> None:
    a, _ = make_demo(tmp_path / "a", settings.data_dir)
    hello = f"{PREFIX}{task_queue}:github:octo/hello"
    other = f"{PREFIX}another-deployment:github:octo/hello"
    await _drop_schedules(client)
    try:
        # another Tamma on the same namespace: its schedule is not ours to delete
        await sync_schedules(
            client,
            polling_settings(settings, "github:octo/hello").model_copy(
                update={"temporal": settings.temporal.model_copy(update={"task_queue": "another-deployment"})}
            ),
        )
        s = polling_settings(settings, f"local:{a.path}", "github:octo/hello", interval_s=600)
        ids = await sync_schedules(client, s)
        assert ids == sorted([schedule_id(task_queue, a.repo), hello])
        await eventually(lambda: _ids(client), lambda got: len(got) == 3, timeout_s=10)
        gh = await client.get_schedule_handle(hello).describe()
        assert gh.schedule.spec.intervals[0].every.total_seconds() == 600
        # a new interval is applied; a repository no longer named loses its schedule
        s2 = polling_settings(settings, "github:octo/hello", interval_s=900)
        assert await sync_schedules(client, s2) == [hello]
        gh = await client.get_schedule_handle(hello).describe()
        assert gh.schedule.spec.intervals[0].every.total_seconds() == 900
        got = await eventually(lambda: _ids(client), lambda ids: ids == sorted([hello, other]), timeout_s=10)
        assert got == sorted([hello, other])
        # polling off: none of ours left, the other deployment's untouched
        off = s2.model_copy(update={"polling": s2.polling.model_copy(update={"enabled": False})})
        assert await sync_schedules(client, off) == []
        assert await eventually(lambda: _ids(client), lambda ids: ids == [other], timeout_s=10) == [other]
    finally:
        await _drop_schedules(client)


async def _ids(client: Client) -> list[str]:
    return sorted([x.id async for x in await client.list_schedules() if x.id.startswith(PREFIX)])
