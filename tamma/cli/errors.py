"""The one place a TammaError becomes a line on stderr and an exit code."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

from rich.markup import escape

from tamma.cli.term import SafeConsole as Console
from tamma.errors import DecisionQueued, TammaError, TemporalUnavailable

T = TypeVar("T")


def run_or_exit(fn: Callable[[], T]) -> T:
    from temporalio.service import RPCError  # here: `tamma --help` should not load the SDK

    try:
        return fn()
    except DecisionQueued as exc:  # recorded, not failed: say so and succeed
        Console(stderr=True).print(f"[yellow]queued:[/] {escape(exc.message)}", highlight=False, soft_wrap=True)
        sys.exit(0)
    except TammaError as exc:
        _fail(exc.message, exc.exit_code)
    except RPCError as exc:  # a Temporal answer no layer below expected: one line, not a traceback
        _fail(f"Temporal answered {exc.status.name}: {exc.message}", TemporalUnavailable.exit_code)


def _fail(message: str, code: int) -> NoReturn:
    Console(stderr=True).print(f"[red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(code)
