"""Tracing: with an OTLP endpoint set, one trace runs from the start of a task through the
workflow and each activity, exported over OTLP/HTTP (protobuf) to a collector stand-in on
127.0.0.1. Without one, nothing is traced."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tamma import telemetry
from tamma.config import Settings, TelemetrySettings, load_settings
from tamma.demo import DEMO_BODY
from tamma.models import Issue, IssueTaskInput, TaskStatus
from tamma.platforms.local import LocalPlatform
from tamma.providers.scripted import DEMO_TRANSCRIPT
from tamma.runtime.client import connect
from tamma.runtime.tasks import TaskService
from tamma.runtime.wiring import build_activities
from tests.conftest import running_worker
from tests.standins.http import Reply, serve


def spans_of(raw_requests: list[bytes]) -> list[tuple[str, bytes, dict[str, str]]]:
    """(span name, trace id, resource attributes) for every span the collector received."""
    out = []
    for raw in raw_requests:
        export = ExportTraceServiceRequest.FromString(raw)
        for rs in export.resource_spans:
            resource = {a.key: a.value.string_value for a in rs.resource.attributes}
            out += [(s.name, s.trace_id, resource) for ss in rs.scope_spans for s in ss.spans]
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
            state = await service.handle(wid).result()
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
