"""The dashboard and the alert rules in deploy/observability, checked and plotted: promtool
checks the rules; a real Prometheus (Debian's `prometheus`) scrapes a running server and a running
worker while an issue merges and a webhook arrives; then every dashboard query and every alert
rule is evaluated by that Prometheus, and the panels a run must fill have data.

Needs `prometheus` and `promtool` on PATH (`.ci/observability-tools.sh`); skipped with the reason
where they are missing, except in CI (OBSERVABILITY_TEST_REQUIRE=1)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from tamma.config import Settings
from tamma.demo import make_demo
from tamma.models import IssueTaskInput, TaskStatus
from tamma.providers.scripted import DEMO_TRANSCRIPT
from tamma.runtime.client import metrics_runtime
from tamma.runtime.tasks import TaskService
from tamma.runtime.wiring import build_activities
from tests.api.conftest import GITHUB_SECRET, github_headers, running_api
from tests.conftest import eventually, running_worker
from tests.ports import free_port

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "observability"
REQUIRED = os.environ.get("OBSERVABILITY_TEST_REQUIRE") == "1"
pytestmark = [
    pytest.mark.prometheus,
    pytest.mark.skipif(
        not (shutil.which("prometheus") and shutil.which("promtool")) and not REQUIRED,
        reason="prometheus/promtool are not installed (bash .ci/observability-tools.sh)",
    ),
]

#: panels a run with a merge and a webhook delivery must fill (the others need model costs,
#: approvals or time: their queries must still evaluate)
MUST_HAVE_DATA = {
    "Tasks finished, by outcome",
    "Tasks waiting for a person",
    "Workers polling, by queue",
    "Task-queue backlog",
    "Webhook deliveries, by outcome",
    "HTTP p95 latency, by route",
    "Temporal reachable from the server",
    "Step time p95, by step",
    "Temporal: workflow-task schedule-to-start p95",
    "Task time p95, by outcome",
    "Fix iterations and review rounds, mean per task",
    "Model tokens, by provider, model and step",
}


def test_the_alert_rules_pass_promtool() -> None:
    done = subprocess.run(
        ["promtool", "check", "rules", str(DEPLOY / "tamma-alerts.yml")], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and "SUCCESS: 6 rules found" in done.stdout, done.stdout + done.stderr


def test_the_dashboard_is_grafana_json_with_a_query_per_panel() -> None:
    dash = json.loads((DEPLOY / "tamma-dashboard.json").read_text())
    assert dash["uid"] == "tamma-overview" and dash["schemaVersion"] >= 36
    titles = [p["title"] for p in dash["panels"]]
    assert len(titles) == len(set(titles)) and set(titles) >= MUST_HAVE_DATA
    assert all(p["targets"] and p["targets"][0]["expr"] for p in dash["panels"])


async def test_the_dashboard_plots_and_the_alerts_evaluate_against_a_live_server_and_worker(
    client: Client, temporal_address: str, task_queue: str, settings: Settings, tmp_path: Path
) -> None:
    from tests.api.conftest import with_sections

    s = with_sections(settings, webhooks={"github_secrets": [GITHUB_SECRET]})
    worker_port, prom_port = free_port(), free_port()
    metered = await Client.connect(
        temporal_address, data_converter=pydantic_data_converter, runtime=metrics_runtime(f"127.0.0.1:{worker_port}")
    )
    with running_api(s, tmp_path / "tamma.toml") as api:
        api_hostport = api.removeprefix("http://")
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(DEPLOY / "tamma-alerts.yml")],
            "scrape_configs": [
                {"job_name": "tamma-server", "static_configs": [{"targets": [api_hostport]}]},
                {"job_name": "tamma-worker", "static_configs": [{"targets": [f"127.0.0.1:{worker_port}"]}]},
            ],
        }
        (tmp_path / "prometheus.yml").write_text(json.dumps(config))  # YAML is a superset of JSON
        prom = subprocess.Popen(  # noqa: ASYNC220 (a process this test ends by its PID)
            [
                "prometheus",
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            stdout=(tmp_path / "prometheus.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        try:
            prometheus = f"http://127.0.0.1:{prom_port}"
            async with httpx.AsyncClient(timeout=10) as http:

                async def query(expr: str) -> dict[str, Any]:
                    resp = await http.get(f"{prometheus}/api/v1/query", params={"query": expr})
                    body: dict[str, Any] = resp.json()
                    return body

                async def up() -> list[Any]:
                    try:
                        return list((await query("up == 1"))["data"]["result"])
                    except (httpx.HTTPError, KeyError, ValueError):
                        return []

                platform, issue = make_demo(tmp_path / "repo", s.data_dir)
                service = TaskService(metered, task_queue)
                opts = s.task_options(transcript=str(DEMO_TRANSCRIPT))
                async with running_worker(metered, task_queue, build_activities(s), s):
                    assert len(await eventually(up, lambda r: len(r) == 2, timeout_s=30)) == 2, (
                        tmp_path / "prometheus.log"
                    ).read_text()[-2000:]
                    wid, _ = await service.start(
                        IssueTaskInput(repo=platform.repo, issue_number=issue.number, options=opts)
                    )
                    assert (await service.result(wid)).status == TaskStatus.MERGED
                    ping = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1}).encode()
                    async with httpx.AsyncClient(base_url=api) as hook:
                        await hook.post(
                            "/webhooks/github", content=ping, headers=github_headers(ping, "ping", "obs-ping-1")
                        )
                    await asyncio.sleep(4)  # a few scrapes of the end state
                    dash = json.loads((DEPLOY / "tamma-dashboard.json").read_text())
                    empty: list[str] = []
                    for panel in dash["panels"]:
                        expr = panel["targets"][0]["expr"].replace("$__rate_interval", "1m")
                        answer = await query(expr)
                        assert answer["status"] == "success", (panel["title"], answer)
                        if panel["title"] in MUST_HAVE_DATA and not answer["data"]["result"]:
                            empty.append(panel["title"])
                    assert not empty, f"panels without data after a run: {empty}"
                    rules = (await http.get(f"{prometheus}/api/v1/rules")).json()["data"]["groups"][0]["rules"]
                    assert len(rules) == 6 and all(r["health"] == "ok" for r in rules), rules
                    merged = await query('sum(tamma_tasks_finished{outcome="merged"})')
                    assert float(merged["data"]["result"][0]["value"][1]) >= 1
        finally:
            prom.terminate()
            try:
                prom.wait(timeout=15)
            except subprocess.TimeoutExpired:
                prom.kill()
                prom.wait()
