"""Every payload of the webhook corpus, signed and posted to the real server: never a 5xx, and
the outcome is what the event means (started, signalled, cancelled, ignored with a reason)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
from temporalio.client import Client

from tamma.api.events import github_action, gitlab_action
from tamma.config import Settings
from tests.api.conftest import FIXTURES, GITLAB_TOKEN, github_headers

OUTCOME = {
    "start": {"started", "attached"},  # several payloads name the same issue: later ones attach
    "signal": {"signalled", "ignored"},
    "cancel": {"cancelled", "ignored"},
    "ignore": {"ignored"},
    "pong": {"pong"},
}


def github_files() -> list[Path]:
    return sorted(p for p in (FIXTURES / "github").glob("*/*.json"))


async def test_every_github_payload(http: httpx.AsyncClient, api_settings: Settings, client: Client) -> None:
    files = github_files()
    assert len(files) == 334
    seen: dict[str, int] = {}
    for path in files:
        event = path.parent.name
        body = path.read_bytes()
        resp = await http.post("/webhooks/github", content=body, headers=github_headers(body, event, str(uuid.uuid4())))
        assert resp.status_code < 500, f"{path}: {resp.status_code} {resp.text}"
        outcome = resp.json()["outcome"]
        expected = github_action(event, json.loads(body), api_settings.webhooks)
        assert outcome in OUTCOME[expected.kind], f"{path}: {outcome} for {expected}"
        if outcome == "ignored":
            assert resp.json()["reason"], path
        if outcome in ("started", "attached"):
            desc = await client.get_workflow_handle(resp.json()["task"]).describe()
            assert desc.id == resp.json()["task"]
        seen[outcome] = seen.get(outcome, 0) + 1
    # The corpus exercises each path: issues assigned to the bot start work, CI/review events
    # reach the Tamma branch (none here: ignored), pings pong, the rest is ignored with a reason.
    assert (
        seen["started"] >= 1
        and seen["started"] + seen.get("attached", 0) >= 3
        and seen["pong"] == 4
        and seen["ignored"] > 250
    )


async def test_every_gitlab_payload(http: httpx.AsyncClient, api_settings: Settings) -> None:
    headers_by_hook = json.loads((FIXTURES / "gitlab" / "headers.json").read_text())
    files = sorted(p for p in (FIXTURES / "gitlab").glob("*/*.json") if p.name != "headers.json")
    assert len(files) == 22
    for path in files:
        event = headers_by_hook[path.parent.name]["X-Gitlab-Event"]
        body = path.read_bytes()
        resp = await http.post(
            "/webhooks/gitlab",
            content=body,
            headers={
                "x-gitlab-event": event,
                "x-gitlab-token": GITLAB_TOKEN,
                "x-gitlab-event-uuid": str(uuid.uuid4()),
                "content-type": "application/json",
            },
        )
        assert resp.status_code < 500, f"{path}: {resp.text}"
        expected = gitlab_action(event, json.loads(body), api_settings.webhooks)
        assert resp.json()["outcome"] in OUTCOME[expected.kind], path
