"""Every activity heartbeats while it runs, so a worker that dies is noticed within the
heartbeat timeout (seconds) and the step retried elsewhere, instead of waiting out a
start-to-close timeout of minutes.

The heartbeat carries the step's progress when it reports one (`report_progress`): the model
usage of this attempt and of earlier ones. Temporal hands the last heartbeat's details to the
next attempt (`activity.info().heartbeat_details`), which is how usage billed by an attempt that
died or failed still reaches the task's totals and budgets.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, ParamSpec, TypeVar

from temporalio import activity

from tamma.agent.checkpoint import Checkpoint
from tamma.models import Usage

log = logging.getLogger("tamma.activity")
P = ParamSpec("P")
R = TypeVar("R")
BEAT_S = 1.0  # Temporal throttles what it sends to the server; beating often costs nothing

_progress: ContextVar[dict[str, Callable[[], Any]] | None] = ContextVar("tamma_progress", default=None)


def heartbeating(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if not activity.in_activity():
            return await fn(*args, **kwargs)
        holder: dict[str, Callable[[], Any]] = {}
        token = _progress.set(holder)
        log.debug("step started")  # the line carries the task, the activity and its attempt

        async def beat() -> None:
            while True:
                # The first beat waits: most steps end sooner, and a heartbeat is a write on the
                # server (the timeout still counts from the step's start).
                await asyncio.sleep(BEAT_S)
                report = holder.get("progress")
                if report is None:
                    activity.heartbeat()
                else:
                    activity.heartbeat(report())

        task = asyncio.create_task(beat())
        try:
            return await fn(*args, **kwargs)
        finally:
            task.cancel()
            _progress.reset(token)

    return wrapper


def report_progress(progress: Callable[[], Any], now: bool = False) -> None:
    """What this activity's heartbeats carry from now on; with `now`, one heartbeat at once."""
    holder = _progress.get()
    if holder is not None:
        holder["progress"] = progress
        if now:
            activity.heartbeat(progress())


def earlier_usage() -> Usage:
    """Model usage that earlier attempts of this activity reported in their last heartbeat."""
    if not activity.in_activity():
        return Usage()
    details = activity.info().heartbeat_details
    if not details or not isinstance(details[0], dict) or "usage" not in details[0]:
        return Usage()
    return Usage.model_validate(details[0]["usage"])


def earlier_checkpoint(iteration: int) -> Checkpoint | None:
    """What an earlier attempt of this implement step had done (agent.checkpoint), if it said."""
    if not activity.in_activity():
        return None
    details = activity.info().heartbeat_details
    if not details or not isinstance(details[0], dict) or not isinstance(details[0].get("checkpoint"), dict):
        return None
    try:
        cp = Checkpoint.model_validate(details[0]["checkpoint"])
    except ValueError:
        return None
    return cp if cp.iteration == iteration else None
