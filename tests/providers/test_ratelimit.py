"""Rate limits as the providers send them, and one shared backoff per key: the real SDKs
against stand-ins on 127.0.0.1."""

from __future__ import annotations

import asyncio
import calendar
import time

import pytest

from tamma.providers.anthropic import AnthropicProvider
from tamma.providers.openai import OpenAIProvider
from tamma.providers.ratelimit import RateLimited, asked_wait
from tests.standins import anthropic_api
from tests.standins.http import Reply, Request, serve

KEY = "sk-ant-limits-0123456789"
NOW = float(calendar.timegm((2027, 1, 15, 8, 0, 0)))  # 2027-01-15T08:00:00Z


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),  # the precise one wins
        ({"retry-after": "Fri, 15 Jan 2027 08:00:30 GMT"}, 30.0),
        # Anthropic: RFC 3339 reset times; the limit that is used up decides
        (
            {
                "anthropic-ratelimit-requests-remaining": "12",
                "anthropic-ratelimit-requests-reset": "2027-01-15T08:00:05Z",
                "anthropic-ratelimit-tokens-remaining": "0",
                "anthropic-ratelimit-tokens-reset": "2027-01-15T08:00:42Z",
            },
            42.0,
        ),
        # OpenAI: durations
        ({"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "6m0s"}, 360.0),
        ({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1h2m3.5s"}, 3723.5),
        ({"x-ratelimit-reset-requests": "20ms"}, 0.02),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_the_wait_a_provider_asks_for(headers: dict[str, str], wait: float | None) -> None:
    got = asked_wait(headers, now=NOW)
    if wait is None:
        assert got is None
    else:
        assert got == pytest.approx(wait)


async def test_concurrent_calls_on_one_key_wait_for_the_limit_instead_of_each_hitting_it() -> None:
    """Four issues share a key; the first call is told to wait 1 s. The other three wait at the
    gate without a request of their own, so the server sees 1 refused call, not 4."""
    answered: list[Request] = []
    refused: list[Request] = []

    def respond(req: Request) -> Reply:
        if not refused:
            refused.append(req)
            return anthropic_api.error(429, "rate_limit_error", "slow down", {"retry-after": "1"})
        answered.append(req)
        return anthropic_api.as_asked(req, Reply(200, anthropic_api.message([anthropic_api.text("ok")])))

    with serve(respond) as standin:

        async def one(delay: float) -> str:
            await asyncio.sleep(delay)
            p = AnthropicProvider(api_key=KEY, model="claude-test", base_url=standin.url, rate_limit_inline_s=5)
            return (await p.chat("code", "s", [], [])).text

        started = time.monotonic()
        results = await asyncio.gather(one(0), one(0.3), one(0.3), one(0.3))
        took = time.monotonic() - started
    assert results == ["ok"] * 4
    assert len(refused) == 1 and len(answered) == 4
    assert took >= 0.9  # everyone waited for the one reset


async def test_a_limit_longer_than_the_step_waits_in_place_goes_to_the_workflow() -> None:
    with serve(lambda req: anthropic_api.error(529, "overloaded_error", "Overloaded", {"retry-after": "120"})) as s:
        p = OpenAIProvider(api_key="sk-x", model="m", base_url=s.url + "/v1", rate_limit_inline_s=2)
        with pytest.raises(RateLimited) as info:
            await p.chat("code", "s", [], [])
        assert info.value.wait_s == 120 and not info.value.retryable
        assert len(s.requests) == 1  # no hammering: one call, then the workflow's durable timer
        assert info.value.details()[0] == {"rate_limited": {"wait_s": 120.0}}
