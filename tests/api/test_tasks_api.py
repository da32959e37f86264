"""The task API against the real server and dev server: start, list (paginated), state,
approve/reject, cancel, SSE logs; config read/validate/replace; ops endpoints; rate limit."""

from __future__ import annotations

import asyncio
import json
import tomllib
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from tamma.config import Settings
from tamma.demo import make_demo, make_sample_repo
from tamma.errors import PermissionDenied
from tamma.providers.scripted import DEMO_TRANSCRIPT
from tamma.runtime.wiring import build_activities
from tamma.version import tamma_version
from tests.api.conftest import (
    GITHUB_SECRET,
    JWT_SECRET,
    a_task_over_http,
    auth,
    github_headers,
    running_api,
    with_sections,
)
from tests.conftest import eventually, running_worker


def q(task_id: str) -> str:
    return urllib.parse.quote(task_id, safe="")


async def test_task_lifecycle_over_http(
    api_settings: Settings, client: Client, task_queue: str, tmp_path: Path
) -> None:
    settings = with_sections(api_settings, approval={"auto_approve": False}, llm={"transcript": str(DEMO_TRANSCRIPT)})
    a, _ = make_demo(tmp_path / "a", settings.data_dir)
    op, viewer = auth(settings, "operator"), auth(settings, "viewer")
    with running_api(settings, tmp_path / "t.toml") as url:
        async with (
            httpx.AsyncClient(base_url=url, timeout=30) as http,
            running_worker(client, task_queue, build_activities(settings), settings),
        ):
            first = await http.post("/api/v1/tasks", json={"repository": f"local:{a.path}", "issue": 1}, headers=op)
            assert first.status_code == 201 and first.json()["created"] is True
            wid = first.json()["id"]
            again = await http.post("/api/v1/tasks", json={"repository": f"local:{a.path}", "issue": 1}, headers=op)
            assert again.json() == {"id": wid, "created": False}
            a.create_issue("Fix off-by-one in paginate() again", "same bug, second report")
            second = await http.post("/api/v1/tasks", json={"repository": f"local:{a.path}", "issue": 2}, headers=op)
            bad = await http.post("/api/v1/tasks", json={"repository": "svn:x", "issue": 1}, headers=op)
            assert bad.status_code == 400 and "must look like" in bad.json()["detail"]
            invalid = await http.post("/api/v1/tasks", json={"repository": "github:a/b", "issue": 0}, headers=op)
            assert invalid.status_code == 422
            for _ in range(300):
                state = (await http.get(f"/api/v1/tasks/{q(wid)}", headers=viewer)).json()
                if state["status"] == "awaiting_approval":
                    break
                await asyncio.sleep(0.1)
            assert state["plan"]["files"] == ["pager.py"]
            # Both tasks must be waiting for approval before the listing is asked (each clones to map
            # the repository first): a full first page carries a token even when nothing follows.
            for _ in range(300):
                other = (await http.get(f"/api/v1/tasks/{q(second.json()['id'])}", headers=viewer)).json()
                if other["status"] == "awaiting_approval":
                    break
                await asyncio.sleep(0.1)
            assert other["status"] == "awaiting_approval", other["status"]
            # Paginated listing from visibility (eventually consistent: give it a moment).
            params = {"page_size": 1, "status": "awaiting_approval", "repository": a.repo.key}
            for _ in range(300):  # visibility lists both (it is eventually consistent)
                page = (await http.get("/api/v1/tasks", params=params, headers=viewer)).json()
                nxt = (
                    (
                        await http.get(
                            "/api/v1/tasks", params={**params, "page_token": page["next_page_token"]}, headers=viewer
                        )
                    ).json()
                    if page["next_page_token"]
                    else {"tasks": []}
                )
                if page["tasks"] and nxt["tasks"]:
                    break
                await asyncio.sleep(0.1)
            ids = {page["tasks"][0]["workflow_id"], nxt["tasks"][0]["workflow_id"]}
            assert ids == {wid, second.json()["id"]}
            assert (await http.get("/api/v1/tasks", params={"page_token": "!!"}, headers=viewer)).status_code == 400
            # Decide both: approve one (and watch its log stream), reject the other, then cancel nothing left.
            approved = await http.post(f"/api/v1/tasks/{q(wid)}/approve", json={"reason": "ok"}, headers=op)
            assert approved.status_code == 200
            twice = await http.post(f"/api/v1/tasks/{q(wid)}/approve", json={}, headers=op)
            assert twice.status_code == 400 and "already approved" in twice.json()["detail"]
            async with http.stream("GET", f"/api/v1/tasks/{q(wid)}/logs", headers=viewer) as stream:
                lines = [line async for line in stream.aiter_lines()]
            events = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
            assert events[-1]["status"] == "merged"
            assert any(e.get("name") == "merge" and e.get("status") == "done" for e in events)
            no_reason = await http.post(f"/api/v1/tasks/{q(second.json()['id'])}/reject", json={}, headers=op)
            assert no_reason.status_code == 400
            rejected = await http.post(
                f"/api/v1/tasks/{q(second.json()['id'])}/reject", json={"reason": "no"}, headers=op
            )
            assert rejected.status_code == 200
            missing = await http.get(f"/api/v1/tasks/{q('tamma:github:no/such#1')}", headers=viewer)
            assert missing.status_code == 404
            gone = await http.delete(f"/api/v1/tasks/{q(wid)}", headers=op)
            assert gone.status_code == 400 and "already finished" in gone.json()["detail"]


async def test_cancel_over_http(api_settings: Settings, client: Client, task_queue: str, tmp_path: Path) -> None:
    settings = with_sections(api_settings, approval={"auto_approve": False}, llm={"transcript": str(DEMO_TRANSCRIPT)})
    op = auth(settings, "operator")
    async with a_task_over_http(settings, client, task_queue, tmp_path) as (_, http, wid):
        assert (await http.delete(f"/api/v1/tasks/{q(wid)}", headers=op)).status_code == 202
        for _ in range(100):
            state = (await http.get(f"/api/v1/tasks/{q(wid)}", headers=op)).json()
            if state["status"] == "cancelled":
                break
            await asyncio.sleep(0.1)
        assert state["status"] == "cancelled"


async def test_config_read_validate_replace(http: httpx.AsyncClient, api_settings: Settings, tmp_path: Path) -> None:
    admin, op = auth(api_settings, "admin"), auth(api_settings, "operator")
    current = (await http.get("/api/v1/config", headers=op)).json()
    text = json.dumps(current)
    assert JWT_SECRET not in text and "gh-webhook-secret" not in text and "**********" in text
    bad = (await http.post("/api/v1/config/validate", json={"worker": {"concurrency": 0}}, headers=op)).json()
    assert bad["valid"] is False and bad["errors"][0].startswith("worker.concurrency")
    good = (await http.post("/api/v1/config/validate", json={"worker": {"concurrency": 4}}, headers=op)).json()
    assert good == {"valid": True, "errors": []}
    path = tmp_path / "tamma.toml"
    path.write_text("[worker]\nconcurrency = 2\n")
    current["worker"]["concurrency"] = 5
    refused = await http.put("/api/v1/config", json={**current, "worker": {"concurrency": -1}}, headers=admin)
    assert refused.status_code == 422 and path.read_text() == "[worker]\nconcurrency = 2\n"
    written = await http.put("/api/v1/config", json=current, headers=admin)
    assert written.status_code == 200, written.text
    saved = tomllib.loads(path.read_text())
    assert saved["worker"]["concurrency"] == 5
    # The secrets came from the environment: never copied into the file, still in effect.
    assert "jwt_secret" not in saved["api"] and "github_secrets" not in saved["webhooks"]
    assert JWT_SECRET not in path.read_text() and GITHUB_SECRET not in path.read_text()
    assert (path.stat().st_mode & 0o777) == 0o600
    assert Path(written.json()["backup"]).read_text() == "[worker]\nconcurrency = 2\n"
    # the worker section is read by the workers at their start: the answer says so
    assert written.json()["applied"] == [] and written.json()["restart_required"] == ["worker"]


async def test_a_rotated_webhook_secret_applies_without_a_restart(
    api_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TAMMA_WEBHOOKS__GITHUB_SECRETS")  # here they live in the file, rotated by PUT
    admin = auth(api_settings, "admin")
    body = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1}).encode()
    with running_api(api_settings, tmp_path / "tamma.toml") as url:
        async with httpx.AsyncClient(base_url=url) as http:

            async def ping(secret: str) -> int:
                headers = github_headers(body, "ping", str(uuid.uuid4()), secret=secret)
                return (await http.post("/webhooks/github", content=body, headers=headers)).status_code

            assert await ping("the-new-secret") == 401
            current = (await http.get("/api/v1/config", headers=admin)).json()
            current["webhooks"]["github_secrets"] = ["the-new-secret"]  # the old ones are dropped
            current["webhooks"]["rate_limit_per_min"] = 50_000
            written = await http.put("/api/v1/config", json=current, headers=admin)
            assert written.status_code == 200, written.text
            assert written.json()["applied"] == ["webhooks"] and written.json()["restart_required"] == []
            assert await ping("the-new-secret") == 200
            assert await ping(GITHUB_SECRET) == 401
            shown = (await http.get("/api/v1/config", headers=admin)).json()["webhooks"]
            assert shown["rate_limit_per_min"] == 50_000 and "the-new-secret" not in json.dumps(shown)


async def test_put_config_keeps_references_and_leaves_a_bad_file_untouched(
    api_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A secret reference in the file survives a round trip as the reference; a document that
    fails only once the environment is applied (what a restart reads) is refused, file unchanged."""
    path = tmp_path / "tamma.yaml"
    monkeypatch.setenv("HOOK_SECRET_FROM_ENV", "resolved-hook-secret-123")
    monkeypatch.delenv("TAMMA_WEBHOOKS__GITHUB_SECRETS")
    path.write_text("webhooks:\n  github_secrets: ['env:HOOK_SECRET_FROM_ENV']\n")
    admin = auth(api_settings, "admin")
    with running_api(api_settings, path) as url:
        async with httpx.AsyncClient(base_url=url) as http:
            current = (await http.get("/api/v1/config", headers=admin)).json()
            current["workflow"]["max_fix_attempts"] = 4
            written = await http.put("/api/v1/config", json=current, headers=admin)
            assert written.status_code == 200, written.text
            saved = path.read_text()
            assert "env:HOOK_SECRET_FROM_ENV" in saved and "resolved-hook-secret-123" not in saved
            before = path.read_text()
            monkeypatch.setenv("TAMMA_WORKFLOW__HEARTBEAT_TIMEOUT_S", "100")  # fine with the current file...
            current["workflow"]["step_timeout_s"] = 60  # ...but not with this one
            refused = await http.put("/api/v1/config", json=current, headers=admin)
            assert refused.status_code == 422 and "heartbeat_timeout_s" in refused.text
            assert path.read_text() == before
            assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tamma")] == []  # no temp left


async def test_ops_endpoints(http: httpx.AsyncClient, client: Client, api_settings: Settings) -> None:
    assert (await http.get("/live")).json() == {"status": "alive"}
    assert (await http.get("/ready")).status_code == 200

    async def health() -> dict[str, Any]:
        body: dict[str, Any] = (await http.get("/health")).json()
        return body

    # no worker runs: Temporal answers, but nothing polls Tamma's queues, and health says so
    idle = await eventually(health, lambda h: bool(h["task_queues"]), timeout_s=15)
    assert idle["temporal"] == "reachable" and idle["status"] == "degraded"
    assert idle["workers"].startswith("waiting for a worker — none polling") and "tamma worker" in idle["workers"]
    assert idle["task_queues"]["workflow"]["pollers"] == 0
    queue = api_settings.temporal.task_queue
    async with running_worker(client, queue, build_activities(api_settings), api_settings):
        busy = await eventually(health, lambda h: h["workers"].startswith("polling: tamma-worker-"), timeout_s=15)
    assert busy["status"] == "ok" and all(q["pollers"] >= 1 for q in busy["task_queues"].values())
    # the worker left (a graceful exit reports it): health says so at its next probe, not minutes later
    gone = await eventually(health, lambda h: h["status"] == "degraded", timeout_s=10)
    assert gone["workers"].startswith("waiting for a worker — none polling")
    assert busy["version"] == tamma_version()
    assert {q["queue"] for q in busy["task_queues"].values()} == {queue, f"{queue}-heavy"}
    await http.post("/webhooks/github", content=b"{}", headers={"x-github-event": "issues"})
    metrics = (await http.get("/metrics")).text
    assert 'tamma_webhook_signature_failures_total{platform="github"} 1.0' in metrics
    assert "tamma_http_request_duration_seconds_bucket" in metrics
    assert f'tamma_task_queue_pollers{{kind="heavy",queue="{queue}-heavy"}}' in metrics
    spec = (await http.get("/openapi.json")).json()
    assert "/webhooks/github" in spec["paths"] and "/api/v1/tasks" in spec["paths"]
    assert spec["info"]["version"] == tamma_version()
    assert (await http.get("/docs")).status_code == 200


async def test_rate_limit_answers_429_then_recovers(api_settings: Settings, tmp_path: Path) -> None:
    limited = with_sections(api_settings, webhooks={"rate_limit_per_min": 30})  # a token every 2 s
    with running_api(limited, tmp_path / "t.toml") as url:
        async with httpx.AsyncClient(base_url=url) as http:
            started = asyncio.get_running_loop().time()
            codes = await asyncio.gather(*(http.post("/webhooks/github", content=b"{}") for _ in range(45)))
            took = asyncio.get_running_loop().time() - started
            by_code = {c: [r.status_code for r in codes].count(c) for c in (401, 429)}
            # 30 in the bucket, plus what refilled while the burst was in flight (one per 2 s)
            assert 30 <= by_code[401] <= 30 + int(took / 2) + 1 and by_code[429] == 45 - by_code[401]
            refused = next(r for r in codes if r.status_code == 429)
            assert int(refused.headers["retry-after"]) >= 1
            assert (await http.get("/health")).status_code == 200  # operations are not limited
            # the API's buckets are its own: the webhook flood did not spend them
            assert (await http.get("/api/v1/tasks", headers=auth(limited, "viewer"))).status_code == 200
            await asyncio.sleep(2.2)
            assert (await http.post("/webhooks/github", content=b"{}")).status_code == 401


async def test_api_rate_limit_is_separate_from_webhooks(api_settings: Settings, tmp_path: Path) -> None:
    # 5 a minute: one token back every 12 s, so nothing refills while the test runs, however slow
    limited = with_sections(api_settings, api={"rate_limit_per_min": 5})
    with running_api(limited, tmp_path / "t.toml") as url:
        async with httpx.AsyncClient(base_url=url) as http:
            codes = [(await http.get("/api/v1/tasks")).status_code for _ in range(8)]
            assert codes == [401] * 5 + [429] * 3
            limited_resp = await http.get("/openapi.json")
            assert limited_resp.status_code == 429 and int(limited_resp.headers["retry-after"]) >= 1
            # webhooks still answer: a noisy API client does not make the forge's deliveries fail
            assert (await http.post("/webhooks/github", content=b"{}")).status_code == 401


async def test_local_repository_must_exist(http: httpx.AsyncClient, api_settings: Settings, tmp_path: Path) -> None:
    make_sample_repo(tmp_path / "r")
    resp = await http.post(
        "/api/v1/tasks",
        json={"repository": f"local:{tmp_path / 'nope'}", "issue": 1},
        headers=auth(api_settings, "operator"),
    )
    assert resp.status_code == 400 and "does not exist" in resp.json()["detail"]


@pytest.mark.parametrize("where", ["/", "/etc", "{home}", "{tmp}/../elsewhere", "relative/path"])
async def test_local_repositories_outside_the_allowlist_are_refused(
    http: httpx.AsyncClient, api_settings: Settings, tmp_path: Path, where: str
) -> None:
    """An operator token cannot point Tamma at any git repository on the server's disk: only
    those under api.local_roots (here tmp_path) or named in webhooks.repositories."""
    path = where.format(home=Path.home(), tmp=tmp_path)
    resp = await http.post(
        "/api/v1/tasks", json={"repository": f"local:{path}", "issue": 1}, headers=auth(api_settings, "operator")
    )
    assert resp.status_code in (400, 403), resp.text
    assert "does not exist" not in resp.text and "not a git repository" not in resp.text  # nothing learned


async def test_a_local_repository_named_in_the_allowlist_is_accepted(
    http: httpx.AsyncClient, api_settings: Settings, tmp_path: Path
) -> None:
    from tamma.api.tasks import check_local_allowed

    named = tmp_path.parent / f"{tmp_path.name}-named"
    narrow = api_settings.model_copy(
        update={
            "api": api_settings.api.model_copy(update={"local_roots": []}),
            "webhooks": api_settings.webhooks.model_copy(update={"repositories": [f"local:{named}"]}),
        }
    )
    check_local_allowed(narrow, str(named))  # named: allowed
    with pytest.raises(PermissionDenied):
        check_local_allowed(narrow, str(tmp_path / "r"))  # no longer under a root


async def test_config_put_is_a_merge_patch_and_a_replace_says_what_it_drops(
    http: httpx.AsyncClient, api_settings: Settings, tmp_path: Path
) -> None:
    admin = auth(api_settings, "admin")
    path = tmp_path / "tamma.toml"
    path.write_text(
        "[worker]\nconcurrency = 2\n[webhooks]\ngitlab_tokens = ['gl-file-token']\n[approval]\nmax_estimate_hours = 7.0\n"
    )
    # {} is a valid document: as a patch it changes nothing (it used to turn webhooks off)
    assert (await http.put("/api/v1/config", json={}, headers=admin)).status_code == 200
    saved = tomllib.loads(path.read_text())
    assert saved["webhooks"]["gitlab_tokens"] == ["gl-file-token"] and saved["worker"]["concurrency"] == 2
    # a patch changes what it names, null removes, the rest stays
    patched = await http.put("/api/v1/config", json={"worker": {"concurrency": 3}, "approval": None}, headers=admin)
    assert patched.status_code == 200 and patched.json()["dropped"] == []
    saved = tomllib.loads(path.read_text())
    assert saved["worker"]["concurrency"] == 3 and "approval" not in saved
    assert saved["webhooks"]["gitlab_tokens"] == ["gl-file-token"]
    # a replace is asked for by name, and says what it left out
    replaced = await http.put("/api/v1/config?replace=true", json={"worker": {"concurrency": 4}}, headers=admin)
    assert replaced.status_code == 200 and replaced.json()["dropped"] == ["webhooks"]
    assert tomllib.loads(path.read_text()) == {"worker": {"concurrency": 4}}
