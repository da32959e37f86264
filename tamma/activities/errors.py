"""The one place a TammaError becomes a Temporal ApplicationError."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import ParamSpec, TypeVar

from temporalio.exceptions import ApplicationError

from tamma.errors import TammaError

P = ParamSpec("P")
R = TypeVar("R")


def temporal_errors(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Raise TammaErrors as ApplicationErrors: retryable ones let Temporal retry with backoff;
    the rest (bad input, missing issue, a diverged transcript) fail at once, because no retry
    can fix them and every retry would only delay the message the user needs."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except TammaError as exc:
            delay = timedelta(seconds=exc.retry_after_s) if exc.retry_after_s else None
            raise ApplicationError(
                exc.message,
                *exc.details(),
                type=exc.failure_type(),
                non_retryable=not exc.retryable,
                next_retry_delay=delay,
            ) from None

    return wrapper
