"""One Temporal Schedule per polled repository (`polling`), kept in step with the settings: the
server creates or updates them at start and after a config reload, and deletes the schedules
of repositories no longer configured. Temporal owns the timing (no timer in our process), and a
schedule keeps firing while the server is down — only the workers must be up."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError

from tamma.config import Settings
from tamma.errors import InvalidInputError, TammaError
from tamma.models import PollInput, RepoRef
from tamma.workflows.poll import PollWorkflow

log = logging.getLogger("tamma.polling")
PREFIX = "tamma-poll:"


def polled_repos(settings: Settings) -> list[RepoRef]:
    """The repositories to poll: `polling.repositories`, or else `webhooks.repositories`."""
    from tamma.platforms.local import local_repo_ref

    named = settings.polling.repositories or settings.webhooks.repositories
    repos: list[RepoRef] = []
    for entry in named:
        platform, _, locator = entry.partition(":")
        if platform == "local" and locator:
            repos.append(local_repo_ref(locator))
        elif platform in ("github", "gitlab") and "/" in locator:
            repos.append(RepoRef(platform=platform, locator=locator.strip("/")))
        else:
            raise InvalidInputError(
                f"polling: repository {entry!r} must look like github:owner/name, gitlab:group/project or local:/path"
            )
    return repos


def schedule_prefix(task_queue: str) -> str:
    """Schedules are this deployment's (its task queue): another Tamma on the same namespace keeps its own."""
    return f"{PREFIX}{task_queue}:"


def schedule_id(task_queue: str, repo: RepoRef) -> str:
    return f"{schedule_prefix(task_queue)}{repo.key}"


def _schedule(settings: Settings, repo: RepoRef) -> Schedule:
    every = settings.polling.local_interval_s if repo.platform == "local" else settings.polling.interval_s
    poll = PollInput(
        repo=repo,
        bot_login=settings.webhooks.bot_login,
        trigger_label=settings.webhooks.trigger_label,
        options=settings.task_options(),
    )
    return Schedule(
        action=ScheduleActionStartWorkflow(
            PollWorkflow.run,
            poll,
            id=schedule_id(settings.temporal.task_queue, repo),  # Temporal appends the fire time
            task_queue=settings.temporal.task_queue,
            execution_timeout=timedelta(seconds=max(60.0, every * 2)),
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=every))]),
        # A poll still running when the next is due (a slow forge): skip, never pile up.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        state=ScheduleState(note="Tamma: start tasks for issues whose webhook was missed"),
    )


async def sync_schedules(client: Client, settings: Settings) -> list[str]:
    """Create or update a schedule per polled repository and delete stale ones; the ids kept."""
    queue = settings.temporal.task_queue
    mine = schedule_prefix(queue)
    wanted = {schedule_id(queue, r): r for r in polled_repos(settings)} if settings.polling.enabled else {}
    # (The schedule list is eventually consistent: one created seconds ago may be missing here;
    # it is then deleted at the next sync. Syncs are minutes apart in practice.)
    existing = [s.id async for s in await client.list_schedules() if s.id.startswith(mine)]
    for sid in existing:
        if sid not in wanted:
            await client.get_schedule_handle(sid).delete()
            log.info("polling stopped for %s (no longer configured)", sid.removeprefix(mine))
    for sid, repo in wanted.items():
        schedule = _schedule(settings, repo)
        try:
            await client.create_schedule(sid, schedule)
            log.info("polling %s every %ss", repo.key, schedule.spec.intervals[0].every.total_seconds())
        except ScheduleAlreadyRunningError:

            def update(_: ScheduleUpdateInput, new: Schedule = schedule) -> ScheduleUpdate:
                return ScheduleUpdate(schedule=new)

            await client.get_schedule_handle(sid).update(update)
    return sorted(wanted)


async def keep_schedules(client: Client, settings: Settings, retry_s: float = 10.0) -> None:
    """`sync_schedules` until it succeeds (Temporal may be down when the server starts)."""
    while True:
        try:
            await sync_schedules(client, settings)
            return
        except TammaError as exc:  # a repository named wrongly: say so, poll nothing
            log.error("polling is off: %s", exc.message)
            return
        except (RPCError, RuntimeError) as exc:
            log.warning("cannot set up polling schedules yet (%s); trying again in %.0fs", exc, retry_s)
            await asyncio.sleep(retry_s)
