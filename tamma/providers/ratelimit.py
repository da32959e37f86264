"""Model rate limits: how long the provider asked us to wait, one shared backoff per key in a
worker process, short waits taken in place, long ones handed to the workflow.

A 429/529 says how long to wait in one of several ways (`retry-after`, `retry-after-ms`,
Anthropic's `anthropic-ratelimit-*-reset` timestamps, OpenAI's `x-ratelimit-reset-*` durations).
No SDK turns those into one number for us with its retries off (Temporal owns retries), so the
parsing is here. The gate is by hand for the same reason: a token bucket would not know the
provider's own reset time, and N issues sharing one key must all wait for it, not each find it.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

from tamma.errors import FailureKind, ProviderError

T = TypeVar("T")

#: waits no header named grow so, then stay at the last value
_BACKOFF = (2.0, 4.0, 8.0, 16.0, 30.0)
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+(?:\.\d+)?)ms)?$")


def _duration_s(text: str) -> float | None:
    """OpenAI's reset durations: "1s", "6m0s", "20ms", "1h2m3.5s"."""
    m = _DURATION.fullmatch(text.strip())
    if not m or not any(m.groups()):
        return None
    h, mi, s, ms = (float(g) if g else 0.0 for g in m.groups())
    return h * 3600 + mi * 60 + s + ms / 1000


def _until_s(stamp: str, now: float) -> float | None:
    """Anthropic's reset times are RFC 3339 timestamps."""
    try:
        return datetime.fromisoformat(stamp.strip().replace("Z", "+00:00")).timestamp() - now
    except ValueError:
        return None


def asked_wait(headers: Any, now: float | None = None) -> float | None:
    """Seconds the provider asked us to wait, from whichever header says it; None if none does.

    `retry-after(-ms)` wins. Otherwise the reset of every limit that is used up (its
    `-remaining` is 0) counts, the latest of them; when none says it is used up, the latest reset."""
    if headers is None:
        return None
    now = time.time() if now is None else now
    get = headers.get
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = get(name)
        if not value:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            try:  # an HTTP date
                return max(0.0, parsedate_to_datetime(value).timestamp() - now)
            except (TypeError, ValueError):
                continue
    spent: list[float] = []
    every: list[float] = []
    for kind in ("requests", "tokens", "input-tokens", "output-tokens"):
        for reset_name, remaining_name, parse in (
            (f"anthropic-ratelimit-{kind}-reset", f"anthropic-ratelimit-{kind}-remaining", _until_s),
            (f"x-ratelimit-reset-{kind}", f"x-ratelimit-remaining-{kind}", lambda v, _n: _duration_s(v)),
        ):
            reset = get(reset_name)
            if not reset:
                continue
            wait = parse(reset, now)
            if wait is None:
                continue
            every.append(max(0.0, wait))
            if str(get(remaining_name, "")).strip() == "0":
                spent.append(max(0.0, wait))
    chosen = spent or every
    return max(chosen) if chosen else None


class RateGate:
    """Shared by every call to one provider endpoint with one key in this process: a rate limit
    closes it until the provider's reset, and every other call waits for it instead of hitting
    the limit again."""

    def __init__(self) -> None:
        self.open_at = 0.0  # monotonic
        self.limited = 0  # rate-limit answers seen (for the benchmark and tests)

    def close(self, wait_s: float) -> None:
        self.limited += 1
        self.open_at = max(self.open_at, time.monotonic() + wait_s)

    def remaining(self) -> float:
        return max(0.0, self.open_at - time.monotonic())


_GATES: dict[str, RateGate] = {}


def gate_for(vendor: str, base_url: str | None, key: str | None) -> RateGate:
    """The process-wide gate of one endpoint + key (the key only as a digest)."""
    digest = hashlib.sha256((key or "").encode()).hexdigest()[:16]
    return _GATES.setdefault(f"{vendor}|{base_url or ''}|{digest}", RateGate())


class RateLimited(ProviderError):
    """A rate limit outlasted what a step waits in place: the workflow waits it out on a durable
    timer (up to workflow.rate_limit_horizon_s), then parks the task for `tamma retry`."""

    retryable = False  # the workflow, not Temporal's retry policy, decides when to call again
    kind = FailureKind.RATE_LIMITED

    def __init__(self, message: str, wait_s: float) -> None:
        super().__init__(message, retryable=False, retry_after_s=None)
        self.wait_s = wait_s

    def details(self) -> list[object]:
        return [{"rate_limited": {"wait_s": round(self.wait_s, 3)}}, *super().details()]


async def within_limits(gate: RateGate, inline_s: float, call: Callable[[], Awaitable[T]]) -> T:
    """Run `call` through `gate`: wait while the gate is closed; on a rate limit close it for the
    wait the provider asked (or a growing backoff) and try again in place while the waits add up
    to at most `inline_s`; past that raise RateLimited, so no worker slot sits idle for minutes.
    The activity keeps heartbeating while it waits here."""
    waited = 0.0
    limited = 0
    while True:
        ahead = gate.remaining()
        if ahead > 0:
            if waited + ahead > inline_s:
                raise RateLimited(f"the model's rate limit holds for {ahead:.0f}s more", ahead)
            await asyncio.sleep(ahead)
            waited += ahead
        try:
            return await call()
        except ProviderError as exc:
            if not exc.rate_limited:
                raise
            wait = exc.retry_after_s if exc.retry_after_s is not None else _BACKOFF[min(limited, len(_BACKOFF) - 1)]
            limited += 1
            gate.close(wait)
            if waited + wait > inline_s:
                raise RateLimited(f"{exc.message} (asked to wait {wait:.0f}s)", wait) from None
