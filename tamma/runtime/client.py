"""Connecting to Temporal: the configured cluster, or the embedded dev server."""

from __future__ import annotations

import asyncio

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError

from tamma.config import Settings
from tamma.errors import TemporalUnavailable
from tamma.runtime.embedded import ensure_embedded_server
from tamma.workflows import search


def resolve_address(settings: Settings) -> tuple[str, bool]:
    """(address, embedded): start the embedded server when no address is configured."""
    t = settings.temporal
    if t.address:
        return t.address, False
    address, _ = ensure_embedded_server(settings.data_dir, t.embedded_port, t.embedded_ui_port)
    return address, True


async def connect(address: str, namespace: str = "default", timeout_s: float = 10.0) -> Client:
    try:
        return await asyncio.wait_for(
            Client.connect(address, namespace=namespace, data_converter=pydantic_data_converter),
            timeout=timeout_s,
        )
    except (RuntimeError, OSError, TimeoutError) as exc:
        raise TemporalUnavailable(
            f"cannot reach Temporal at {address} ({str(exc).splitlines()[0][:200] or 'timeout'}); "
            "check temporal.address (TAMMA_TEMPORAL__ADDRESS) or unset it to use the embedded server"
        ) from None


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
        if "already" not in str(exc).lower():
            raise
