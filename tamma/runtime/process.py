"""Process exit for launchers that used a Temporal client."""

from __future__ import annotations

import os
import sys


def exit_now(code: int) -> None:
    """Flush and exit without interpreter finalization.

    The Temporal SDK's Rust bridge keeps threads that can touch the GIL while CPython finalizes,
    which aborts the process ("PyGILState_Release: thread state ... must be current",
    temporalio/sdk-python#300) and turns a clean exit 0 into SIGABRT. Everything that matters
    (workflow state) is already durable in Temporal by now, so skipping finalization loses nothing.
    """
    telemetry = sys.modules.get("tamma.telemetry")  # not loaded: no spans (and --help stays fast)
    if telemetry is not None:
        telemetry.flush()  # spans still buffered (no-op when tracing is off)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
