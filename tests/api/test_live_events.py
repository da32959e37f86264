"""Live task events over WebSockets: JWT auth (header or ?access_token=), step events then the
end, a ping while nothing happens, and 200 watchers of one task served by one feed — one state
query per poll whatever the number of watchers — to the end of the task."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from temporalio.client import Client

from tamma.config import Settings
from tamma.demo import make_demo
from tamma.providers.scripted import DEMO_TRANSCRIPT
from tamma.runtime.wiring import build_activities
from tests.api.conftest import auth, running_api, token, with_sections
from tests.conftest import running_worker

WATCHERS = 200


def ws_url(url: str, wid: str) -> str:
    return url.replace("http://", "ws://") + f"/api/v1/tasks/{urllib.parse.quote(wid, safe='')}/events"


async def watch(url: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    """Every message until the server closes the stream."""
    seen: list[dict[str, Any]] = []
    async with websockets.connect(url, additional_headers=headers, open_timeout=30, max_queue=None) as ws:
        async for raw in ws:
            seen.append(json.loads(raw))
    return seen


async def test_two_hundred_watchers_follow_one_task_to_its_end_on_one_feed(
    api_settings: Settings, client: Client, task_queue: str, tmp_path: Path
) -> None:
    settings = with_sections(api_settings, approval={"auto_approve": False}, llm={"transcript": str(DEMO_TRANSCRIPT)})
    repo, _ = make_demo(tmp_path / "repo", settings.data_dir)
    op = auth(settings, "operator")
    bearer = {"authorization": f"Bearer {token(settings, 'viewer')}"}
    apps: list[Any] = []
    with running_api(settings, tmp_path / "t.toml", started=apps.append) as url:
        async with (
            httpx.AsyncClient(base_url=url, timeout=30) as http,
            running_worker(client, task_queue, build_activities(settings), settings),
        ):
            wid = await http.post("/api/v1/tasks", json={"repository": f"local:{repo.path}", "issue": 1}, headers=op)
            wid = wid.json()["id"]
            q = urllib.parse.quote(wid, safe="")
            for _ in range(300):
                if (await http.get(f"/api/v1/tasks/{q}", headers=op)).json()["status"] == "awaiting_approval":
                    break
                await asyncio.sleep(0.1)
            # refused before the upgrade: no token, a bad one, no such task
            for headers, target in (({}, wid), ({"authorization": "Bearer nope"}, wid), (bearer, wid + "-none")):
                with pytest.raises(websockets.exceptions.InvalidStatus):
                    await watch(ws_url(url, target), headers)
            watchers = [asyncio.create_task(watch(ws_url(url, wid), bearer)) for _ in range(WATCHERS - 1)]
            # a browser, which cannot set headers, passes the token in the query
            browser = ws_url(url, wid) + f"?access_token={token(settings, 'viewer')}"
            watchers.append(asyncio.create_task(watch(browser, {})))
            await asyncio.sleep(1)
            feeds = apps[0].state.live.feeds
            assert list(feeds) == [wid]  # one feed for all of them
            before = feeds[wid].polls
            await asyncio.sleep(2)
            polled = feeds[wid].polls - before  # ~4 at one poll per 0.5 s, whatever the watchers
            assert polled <= 8, polled
            assert (await http.post(f"/api/v1/tasks/{q}/approve", json={}, headers=op)).status_code == 200
            seen = await asyncio.wait_for(asyncio.gather(*watchers), 120)
    for messages in seen:
        steps = [m["step"]["name"] for m in messages if m["event"] == "step"]
        assert messages[-1]["event"] == "end" and messages[-1]["status"] == "merged", messages[-3:]
        assert {"fetch issue", "plan", "approval", "implement", "merge"} <= set(steps)
    print(f"\n{WATCHERS} watchers to the end of one task; {polled} state queries in 2 s for all of them")


async def test_a_watcher_that_falls_behind_is_dropped_not_buffered_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """Backpressure: a stalled reader's queue fills; it is dropped with a reason (the WebSocket
    then closes 1013, reconnect), while a reader that keeps up gets every event."""
    from datetime import UTC, datetime

    from tamma.api import live
    from tamma.models import RepoRef, StepName, StepRecord, TaskState

    monkeypatch.setattr(live, "POLL_S", 0.001)
    monkeypatch.setattr(live, "QUEUE", 8)
    ticks = 0

    class Changing:  # a task whose step detail changes on every look: an event each poll
        async def state(self, wid: str) -> TaskState:
            nonlocal ticks
            ticks += 1
            step = StepRecord(name=StepName.IMPLEMENT, started_at=datetime.now(UTC), detail=f"turn {ticks}")
            return TaskState(workflow_id=wid, repo=RepoRef(platform="local", locator="/r"), issue_number=1,
                             steps=[step])  # fmt: skip

    hub = live.LiveHub(Changing())  # type: ignore[arg-type]
    got: list[dict[str, Any] | None] = []
    async with hub.subscribe("t") as stalled, hub.subscribe("t") as reader:
        while len(got) < 40:
            got.append(await reader.get())
        backlog = [stalled.get_nowait() for _ in range(stalled.qsize())]
    assert backlog[-1] is live.TOO_SLOW and len(backlog) <= 8
    assert [e["step"]["detail"] for e in got if e] == [f"turn {n}" for n in range(1, 41)]
    assert hub.feeds == {}  # the last watcher gone: the feed stops
