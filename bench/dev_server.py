"""The Temporal dev server the benchmarks measure against: in memory (or on a file given in
`extra_args`), Tamma's search attributes and data converter, no UI, quiet."""

from __future__ import annotations

import sys
from pathlib import Path

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tamma.runtime.embedded import temporal_binary  # noqa: E402
from tamma.workflows import search  # noqa: E402


async def start_dev_server(*extra_args: str) -> WorkflowEnvironment:
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()),
        search_attributes=list(search.ALL),
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
        ui=False,
        dev_server_extra_args=list(extra_args),
    )
