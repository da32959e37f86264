"""Tracing: with an OTLP endpoint set, one trace runs from the start of a task through the
workflow and each activity, exported over OTLP/HTTP (protobuf) to a collector stand-in on
127.0.0.1. Without one, nothing is traced."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from temporalio.client import Client

from tamma import telemetry
from tamma.config import Settings, TelemetrySettings, load_settings
from tamma.demo import DEMO_BODY
from tamma.models import Issue, IssueTaskInput, TaskStatus
from tamma.platforms.local import LocalPlatform
from tamma.providers.scripted import DEMO_TRANSCRIPT
from tamma.runtime.client import connect
from tamma.runtime.tasks import TaskService
from tamma.runtime.wiring import build_activities
from tests.api.conftest import github_headers, load, running_api
from tests.conftest import running_worker
from tests.standins.http import Reply, serve


def spans_of(raw_requests: list[bytes]) -> list[tuple[str, bytes, dict[str, str]]]:
    """(span name, trace id, resource attributes) for every span the collector received."""
    return [(name, trace, resource) for name, trace, resource, _ in spans_with_attributes(raw_requests)]


def spans_with_attributes(raw_requests: list[bytes]) -> list[tuple[str, bytes, dict[str, str], dict[str, str]]]:
    out = []
    for raw in raw_requests:
        export = ExportTraceServiceRequest.FromString(raw)
        for rs in export.resource_spans:
            resource = {a.key: a.value.string_value for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    attributes = {a.key: a.value.string_value for a in s.attributes}
                    out.append((s.name, s.trace_id, resource, attributes))
    return out


async def test_a_task_is_one_trace_across_workflow_and_activities(
    temporal_address: str, task_queue: str, settings: Settings, demo: tuple[LocalPlatform, Issue]
) -> None:
    platform, issue = demo
    with serve(lambda req: Reply(200, {})) as collector:
        traced = settings.model_copy(
            update={"telemetry": TelemetrySettings(otlp_endpoint=collector.url, service_name="tamma-under-test")}
        )
        client = await connect(temporal_address, interceptors=telemetry.tracing_interceptors(traced))
        service = TaskService(client, task_queue)
        opts = traced.task_options(transcript=str(DEMO_TRANSCRIPT))
        async with running_worker(client, task_queue, build_activities(traced), traced):
            wid, _ = await service.start(IssueTaskInput(repo=platform.repo, issue_number=issue.number, options=opts))
            state = await service.result(wid)
        telemetry.flush()
    assert state.status == TaskStatus.MERGED, state.error
    assert {r.path for r in collector.requests} == {"/v1/traces"}
    assert {r.headers["content-type"] for r in collector.requests} == {"application/x-protobuf"}
    spans = spans_of([r.raw for r in collector.requests])
    names = {name for name, _, _ in spans}
    for expected in (
        "StartWorkflow:IssueWorkflow",
        "RunWorkflow:IssueWorkflow",
        "StartActivity:fetch_issue",
        "RunActivity:fetch_issue",
        "RunActivity:implement",
        "RunActivity:merge",
    ):
        assert expected in names, sorted(names)
    ours = [s for s in spans if s[0] in ("StartWorkflow:IssueWorkflow", "RunActivity:implement")]
    assert len({trace for _, trace, _ in ours}) == 1  # the start and the coding step share one trace
    assert all(resource["service.name"] == "tamma-under-test" for _, _, resource in spans)
    everything = b"".join(r.raw for r in collector.requests)
    assert DEMO_BODY.splitlines()[0].encode() not in everything  # names and ids, never payloads


def test_tracing_is_off_unless_an_endpoint_is_set(settings: Settings) -> None:
    assert telemetry.tracing_interceptors(settings) == []


def test_the_standard_otel_variables_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector.internal:4318")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "tamma-prod")
    t = load_settings().telemetry
    assert (t.otlp_endpoint, t.service_name) == ("http://collector.internal:4318", "tamma-prod")
    monkeypatch.setenv("TAMMA_TELEMETRY__OTLP_ENDPOINT", "http://ours:4318")  # Tamma's own variable wins
    assert load_settings().telemetry.otlp_endpoint == "http://ours:4318"


async def test_a_webhook_delivery_and_the_workflow_it_starts_are_one_trace(
    api_settings: Settings, client: Client
) -> None:
    payload = load("github/issues/assigned.json")
    payload["repository"] = dict(payload["repository"], full_name=f"octo-{uuid.uuid4().hex[:8]}/traced")
    body = json.dumps(payload).encode()
    with serve(lambda req: Reply(200, {})) as collector:
        traced = api_settings.model_copy(update={"telemetry": TelemetrySettings(otlp_endpoint=collector.url)})
        with running_api(traced) as url:
            async with httpx.AsyncClient(base_url=url) as http:
                headers = github_headers(body, "issues", str(uuid.uuid4()))
                answer = await http.post("/webhooks/github", content=body, headers=headers)
        telemetry.flush()
    assert answer.json()["outcome"] == "started", answer.text
    spans = spans_with_attributes([r.raw for r in collector.requests])
    # the delivery's server span (named by its method: the fast path selects no FastAPI route)
    http_span = [s for s in spans if s[3].get("url.path") == "/webhooks/github"]
    start_span = [s for s in spans if s[0] == "StartWorkflow:IssueWorkflow"]
    assert http_span and start_span, [(s[0], s[3]) for s in spans]
    assert http_span[0][1] == start_span[0][1]  # the start is a child of the delivery's request span
    assert "x-hub-signature-256" not in json.dumps([s[3] for s in spans]).lower()
    await client.get_workflow_handle(answer.json()["task"]).terminate("test done")
