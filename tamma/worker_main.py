"""A Tamma worker process, no prompts, configured by settings only: what `tamma-worker` (installed)
and `python worker.py` (a checkout) run.

Scale out by running more of these; SIGTERM stops polling and lets in-flight activities
finish (up to worker.graceful_shutdown_s) before exiting 0.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from tamma.errors import TammaError
from tamma.logs import configure
from tamma.runtime.process import exit_now
from tamma.runtime.reload import RESTART, load_settled, reexec
from tamma.runtime.worker import serve


def main() -> int:
    configure("info")  # until the settings say otherwise (a settings error is logged too)
    try:
        settings = load_settled(None)
        configure(settings.logging.level, settings.logging.format, settings.secrets())
        code = asyncio.run(serve(settings, ready=lambda msg: logging.getLogger("tamma.worker").info(msg)))
    except TammaError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    if code == RESTART:
        reexec()  # new settings: a fresh process, same PID
    return 0


def run() -> None:
    exit_now(main())


if __name__ == "__main__":
    run()
