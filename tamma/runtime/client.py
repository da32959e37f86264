"""Connecting to Temporal: the configured cluster, or the embedded dev server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client, Interceptor
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import RPCError, RPCStatusCode, TLSConfig

from tamma.config import Settings
from tamma.config.schema import TemporalSettings
from tamma.errors import ConfigError, TemporalUnavailable
from tamma.runtime.embedded import ensure_embedded_server
from tamma.runtime.presence import HEARTBEAT, heartbeat_runtime
from tamma.telemetry import tracing_interceptors
from tamma.workflows import search

log = logging.getLogger(__name__)
_NOT_READY = (RPCStatusCode.NOT_FOUND, RPCStatusCode.UNAVAILABLE)
# How long a just-started embedded server may take to serve its namespace.
EMBEDDED_NAMESPACE_WAIT_S = 30.0


def resolve_address(settings: Settings) -> tuple[str, bool]:
    """(address, embedded): start the embedded server when no address is configured."""
    t = settings.temporal
    if t.address:
        return t.address, False
    address, _ = ensure_embedded_server(settings.data_dir, t.embedded_port, t.embedded_ui_port)
    return address, True


def security(t: TemporalSettings) -> dict[str, Any]:
    """Client.connect's `tls` and `api_key` from the settings: mTLS with a client certificate
    (Temporal Cloud's first way), an API key over TLS (its second), or TLS with a private CA.
    Unreadable files are a ConfigError naming the key."""
    if not t.uses_tls:
        return {}

    def read(key: str, path: Path | None) -> bytes | None:
        if path is None:
            return None
        try:
            return path.expanduser().read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"temporal.{key} = {str(path)!r} cannot be read ({exc.strerror}): give a PEM file"
            ) from None

    tls = TLSConfig(
        client_cert=read("tls_client_cert", t.tls_client_cert),
        client_private_key=read("tls_client_key", t.tls_client_key),
        server_root_ca_cert=read("tls_server_ca", t.tls_server_ca),
        domain=t.tls_server_name,
    )
    options: dict[str, Any] = {"tls": tls}
    if t.api_key is not None:
        options["api_key"] = t.api_key.get_secret_value()
    return options


async def connect(
    address: str,
    namespace: str = "default",
    timeout_s: float = 10.0,
    namespace_wait_s: float = 0.0,
    interceptors: Sequence[Interceptor] = (),
    runtime: Runtime | None = None,
    secure: dict[str, Any] | None = None,
) -> Client:
    """Connect and check the namespace is served; a server that has just started may listen before
    its namespaces are loaded, so `namespace_wait_s` (the embedded server's case) waits that out.
    `secure`: TLS and API key options (security())."""
    try:
        client = await asyncio.wait_for(
            Client.connect(
                address,
                namespace=namespace,
                data_converter=pydantic_data_converter,
                interceptors=interceptors,
                runtime=runtime,
                **(secure or {}),
            ),
            timeout=timeout_s,
        )
    except (RuntimeError, OSError, TimeoutError) as exc:
        raise TemporalUnavailable(
            f"cannot reach Temporal at {address} ({first_line(exc)}); "
            "check temporal.address (TAMMA_TEMPORAL__ADDRESS) or unset it to use the embedded server"
        ) from None
    await _wait_for_namespace(client, address, namespace, namespace_wait_s)
    return client


def first_line(exc: BaseException) -> str:
    """The first line of an error's message; a connect timeout has none (asyncio's TimeoutError)."""
    lines = str(exc).splitlines()
    return lines[0][:200] if lines and lines[0].strip() else type(exc).__name__.replace("Error", " error").strip()


async def _wait_for_namespace(client: Client, address: str, namespace: str, wait_s: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while True:
        try:
            await client.workflow_service.describe_namespace(
                DescribeNamespaceRequest(namespace=namespace), timeout=timedelta(seconds=5)
            )
            return
        except RPCError as exc:
            if exc.status not in _NOT_READY or loop.time() >= deadline:
                what = "is not served" if exc.status == RPCStatusCode.NOT_FOUND else f"cannot be read ({exc.message})"
                raise TemporalUnavailable(
                    f"Temporal namespace {namespace!r} {what} at {address}; check temporal.namespace "
                    f"(TAMMA_TEMPORAL__NAMESPACE) or create it: temporal operator namespace create -n {namespace}"
                ) from None
        await asyncio.sleep(0.1)


async def ensure_search_attributes(client: Client, namespace: str) -> None:
    """Register Tamma's search attributes if the server lacks them (idempotent)."""
    have = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=namespace))
    missing = {
        k.name: IndexedValueType.ValueType(k.indexed_value_type)
        for k in search.ALL
        if k.name not in have.custom_attributes
    }
    if not missing:
        return
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )
    except RPCError as exc:
        if exc.status in (RPCStatusCode.PERMISSION_DENIED, RPCStatusCode.UNIMPLEMENTED):
            # Temporal Cloud: search attributes are added by an account admin, not by a client
            log.warning(
                "cannot register the search attributes %s (%s): add them to namespace %r yourself "
                "(Temporal Cloud: tcld namespace search-attributes add)",
                ", ".join(f"{k}={v}" for k, v in missing.items()),
                exc.message,
                namespace,
            )
            return
        if "already" not in str(exc).lower():
            raise


def metrics_runtime(address: str) -> Runtime:
    """A Temporal runtime whose telemetry serves Prometheus at `address`: the SDK's own worker
    metrics (polls, slots, schedule-to-start, sticky cache) and the workflows' own
    (`workflow.metric_meter()`: Tamma's task and step metrics, never counted twice on replay)."""
    minute, hour = 60_000.0, 3_600_000.0  # durations are in milliseconds
    buckets: dict[str, list[float]] = {
        # per-task counts are small integers: the SDK's default buckets are made for milliseconds
        "tamma_fix_iterations": [0, 1, 2, 3, 5, 8],
        "tamma_review_rounds": [0, 1, 2, 3, 5],
        "tamma_task_history_events": [50, 100, 200, 500, 1000, 2000, 10000, 51200],
        "tamma_task_duration": [m * minute for m in (1, 5, 15, 30)] + [h * hour for h in (1, 2, 4, 8, 24, 72)],
    }
    return Runtime(
        telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=address, histogram_bucket_overrides=buckets)),
        worker_heartbeat_interval=HEARTBEAT,
    )


async def open_client(settings: Settings, runtime: Runtime | None = None) -> tuple[Client, str, bool]:
    """What every launcher (CLI, worker) does first: (client, address, embedded). Starts the
    embedded server when no address is configured, waits for its namespace, registers the
    search attributes, and carries the tracing interceptor when tracing is on."""
    address, embedded = await asyncio.to_thread(resolve_address, settings)
    t = settings.temporal
    client = await connect(
        address,
        t.namespace,
        t.connect_timeout_s,
        namespace_wait_s=EMBEDDED_NAMESPACE_WAIT_S if embedded else 0.0,
        interceptors=tracing_interceptors(settings),
        # worker heartbeats every few seconds: how presence knows a worker left (runtime.presence)
        runtime=runtime or heartbeat_runtime(),
        secure=security(t) if t.address else None,
    )
    await ensure_search_attributes(client, t.namespace)
    return client, address, embedded
