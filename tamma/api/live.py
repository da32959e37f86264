"""Live task events for any number of watchers: one feed per task asks Temporal for the task's
state (every POLL_S while anyone watches) and hands each change to every subscriber's bounded
queue. Two hundred browsers on one task cost one query every half second, not four hundred.

A subscriber that does not keep up (its queue full: a stalled connection) is dropped with a
reason rather than buffered without bound, so a slow watcher cannot grow the server's memory.
Written by hand: the fan-out is a few lines over asyncio queues; no library fits between
Temporal's queries and Starlette's WebSocket without one of them doing the polling per client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from tamma.errors import TammaError
from tamma.runtime.tasks import TaskService

POLL_S = 0.5
#: events a subscriber may fall behind by before it is dropped as too slow
QUEUE = 256


@dataclass
class _Feed:
    wid: str
    queues: set[asyncio.Queue[dict[str, Any] | None]] = field(default_factory=set)
    last: dict[str, Any] | None = None  # the latest state event, for those who join later
    marks: dict[int, str] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)  # every step event so far
    task: asyncio.Task[None] | None = None
    polls: int = 0


class LiveHub:
    def __init__(self, service: TaskService) -> None:
        self.service = service
        self.feeds: dict[str, _Feed] = {}

    @contextlib.asynccontextmanager
    async def subscribe(self, wid: str) -> AsyncIterator[asyncio.Queue[dict[str, Any] | None]]:
        """A queue of this task's events: what happened so far, then each change; None after the
        end event; TOO_SLOW last if the reader fell QUEUE events behind."""
        feed = self.feeds.get(wid)
        if feed is None:
            feed = self.feeds[wid] = _Feed(wid)
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=QUEUE)
        for event in feed.history[-QUEUE // 2 :]:
            queue.put_nowait(event)
        if feed.last is not None and feed.last["event"] == "end":
            queue.put_nowait(feed.last)
            queue.put_nowait(None)
        feed.queues.add(queue)
        if feed.task is None or feed.task.done():
            feed.task = asyncio.create_task(self._poll(feed))
        try:
            yield queue
        finally:
            feed.queues.discard(queue)
            if not feed.queues and feed.task is not None:
                feed.task.cancel()
                self.feeds.pop(wid, None)

    async def _poll(self, feed: _Feed) -> None:
        while feed.queues:
            feed.polls += 1
            try:
                state = await self.service.state(feed.wid)
            except TammaError as exc:
                self._send(feed, {"event": "error", "detail": exc.message})
                await asyncio.sleep(POLL_S * 4)
                continue
            for n, step in enumerate(state.steps):
                mark = f"{step.status}:{step.detail}"
                if feed.marks.get(n) != mark:
                    feed.marks[n] = mark
                    event = {"event": "step", "step": json.loads(step.model_dump_json())}
                    feed.history.append(event)
                    self._send(feed, event)
            if state.status.finished:
                feed.last = {"event": "end", "status": state.status.value, "error": state.error}
                self._send(feed, feed.last)
                self._send(feed, None)
                return
            await asyncio.sleep(POLL_S)

    def _send(self, feed: _Feed, event: dict[str, Any] | None) -> None:
        for queue in list(feed.queues):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                feed.queues.discard(queue)  # too slow: its reader sees TOO_SLOW and closes
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
                queue.put_nowait(TOO_SLOW)


#: what a dropped subscriber reads last
TOO_SLOW: dict[str, Any] = {"event": "dropped", "detail": f"more than {QUEUE} events behind: reconnect"}
