"""The one place a TammaError becomes a line on stderr and an exit code."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

from rich.console import Console
from rich.markup import escape

from tamma.errors import TammaError

T = TypeVar("T")


def run_or_exit(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except TammaError as exc:
        Console(stderr=True).print(f"[red]error:[/] {escape(exc.message)}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
