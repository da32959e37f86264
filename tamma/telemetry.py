"""Tracing with OpenTelemetry: one trace from a webhook or a CLI start through the workflow and
each activity (Temporal's TracingInterceptor carries the context in workflow and activity headers),
exported over OTLP/HTTP to any collector (Jaeger, Tempo, Honeycomb, the OpenTelemetry Collector).

Off unless `telemetry.otlp_endpoint` (or OTEL_EXPORTER_OTLP_ENDPOINT) is set. Spans carry names and
ids, never payloads: the interceptor records no workflow or activity arguments.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from tamma.config import Settings, TelemetrySettings

if TYPE_CHECKING:  # the SDK is imported only when tracing is on; FastAPI only by the server
    from fastapi.telemetry import TelemetryConfig
    from opentelemetry.sdk.trace import TracerProvider
    from temporalio.client import Interceptor

_lock = threading.Lock()
_providers: dict[tuple[str, str], TracerProvider] = {}


def tracing_interceptors(settings: Settings) -> list[Interceptor]:
    """The client interceptors for these settings: none when tracing is off. Workers built from
    the client inherit them."""
    t = settings.telemetry
    if not t.otlp_endpoint:
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    tracer = _provider(t).get_tracer("tamma")
    # always_create_workflow_spans: a workflow started by another process still gets its spans.
    return [TracingInterceptor(tracer, always_create_workflow_spans=True)]


def fastapi_telemetry(settings: Settings) -> TelemetryConfig:
    """FastAPI's own request spans, on Tamma's provider when tracing is on (a webhook delivery and
    the workflow it starts are then one trace), entirely off otherwise. Its metrics and logs stay
    off: Prometheus serves the metrics, and its logs would carry validation messages."""
    t = settings.telemetry
    if not t.otlp_endpoint:
        return {"tracing": False, "metrics": False, "logs": False}
    return {"tracer_provider": _provider(t), "tracing": True, "metrics": False, "logs": False}


def _provider(t: TelemetrySettings) -> TracerProvider:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    assert t.otlp_endpoint is not None
    key = (t.otlp_endpoint, t.service_name)
    with _lock:
        provider = _providers.get(key)
        if provider is None:
            provider = TracerProvider(resource=Resource.create({"service.name": t.service_name}))
            endpoint = t.otlp_endpoint.rstrip("/") + "/v1/traces"
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, timeout=5)))
            _providers[key] = provider
        return provider


def flush(timeout_s: float = 5.0) -> None:
    """Send what is buffered; launchers call it before they exit (they skip interpreter
    finalisation, so the SDK's own atexit hook would not run)."""
    with _lock:
        providers = list(_providers.values())
    for provider in providers:
        provider.force_flush(int(timeout_s * 1000))
