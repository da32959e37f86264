"""What the real providers share: error mapping, schema tools, cost, limits on bad output."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel
from temporalio import activity

from tamma.errors import ProviderError
from tamma.models import Usage
from tamma.providers.ratelimit import asked_wait

ANSWER_TOOL = "answer"


def count_call(provider: str, model: str, call: Usage) -> None:
    """Count one model call in the worker's metrics (tamma_llm_calls/_tokens/_cost_usd_micros),
    labelled by provider, model and step (the activity that made it). Counted when the call is
    made, so the calls of attempts that later failed count too: they were paid for. Outside an
    activity (a CLI command) there is no worker to report to."""
    if not activity.in_activity():
        return
    labels = {"provider": provider, "model": model, "step": activity.info().activity_type}
    meter = activity.metric_meter()
    meter.create_counter("tamma_llm_calls", "model calls").add(call.calls, labels)
    meter.create_counter("tamma_llm_tokens", "model tokens (input + output + cache)").add(call.tokens, labels)
    # SDK counters are integers: cost counts in millionths of a dollar
    meter.create_counter("tamma_llm_cost_usd_micros", "model cost, USD x 1e6").add(round(call.cost_usd * 1e6), labels)


async def drain(events: AsyncIterator[Any], vendor: str, idle_timeout_s: float, sdk_error: type[Exception]) -> None:
    """Read a streamed reply to its end; each event must come within `idle_timeout_s` of the one
    before (a model that goes quiet mid-reply fails the call, retryable). The SDK's own errors
    (an error event) pass through; the HTTP library's (a reset, a closed socket) say so."""
    iterator = events.__aiter__()
    while True:
        try:
            await asyncio.wait_for(iterator.__anext__(), idle_timeout_s)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise ProviderError(
                f"{vendor} sent nothing for {idle_timeout_s:g}s in the middle of a reply (llm.idle_timeout_s)"
            ) from None
        except sdk_error:
            raise
        except Exception as exc:
            if type(exc).__module__.split(".")[0].startswith("http"):
                raise ProviderError(f"the connection to {vendor} broke mid-reply ({type(exc).__name__})") from None
            raise


def answer_tool_schema(schema: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema of the forced `answer` tool: the pydantic model's own schema."""
    return schema.model_json_schema()


def priced(usage: Usage, price: Any | None) -> Usage:
    """`usage` with its cost filled in from a Price (USD per million tokens), if one is known."""
    if price is None:
        return usage
    cost = (
        usage.input_tokens * price.input
        + usage.output_tokens * price.output
        + usage.cache_read_tokens * price.cache_read
        + usage.cache_write_tokens * price.cache_write
    ) / 1_000_000
    return usage.model_copy(update={"cost_usd": round(cost, 6)})


#: how Anthropic ("prompt is too long: 210000 tokens > 200000 maximum"), OpenAI
#: ("context_length_exceeded", "maximum context length is ...") and common OpenAI-compatible
#: servers (vLLM, llama.cpp, Ollama) say a prompt is over the window
_OVERFLOW = re.compile(
    r"prompt is too long|context[_ ]length[_ ]exceeded|maximum context length|context window|"
    r"exceeds the context|too many (input )?tokens|input is too long",
    re.IGNORECASE,
)


def map_api_error(exc: Exception, vendor: str, model: str, key_setting: str) -> ProviderError:
    """Turn an SDK error into a ProviderError: transient ones retry (Temporal's policy, honouring
    retry-after); ones no retry can fix name the setting to change."""
    # imported here: the SDKs cost ~0.3 s to import, which `tamma --help` and the scripted
    # provider should not pay (the providers that raise these import them anyway)
    import anthropic
    import openai

    if isinstance(exc, anthropic.APITimeoutError | openai.APITimeoutError):
        return ProviderError(f"{vendor} did not answer in time")
    if isinstance(exc, anthropic.APIConnectionError | openai.APIConnectionError):
        return ProviderError(f"cannot connect to {vendor} ({type(exc).__name__})")
    status = getattr(exc, "status_code", None)
    if status is None or status < 400:  # an error event inside a streamed reply (its HTTP status was 200)
        status = _STREAM_ERRORS.get(_error_type(exc), 500)
    response = getattr(exc, "response", None)
    headers = response.headers if response is not None else None
    detail = _error_message(exc)
    if status in (429, 529):
        limited = ProviderError(
            f"{vendor} {'rate limit' if status == 429 else 'is overloaded'} ({status}): {detail}",
            retry_after_s=asked_wait(headers),
        )
        limited.rate_limited = True
        return limited
    if status in (408, 409) or (status is not None and status >= 500):
        return ProviderError(f"{vendor} is unavailable ({status}): {detail}", retry_after_s=asked_wait(headers))
    if status == 401:
        return ProviderError(f"{vendor} refused the API key (401); set {key_setting}", retryable=False)
    if status == 403:
        return ProviderError(
            f"{vendor} denied access (403): {detail}; check the key's permissions "
            f"({key_setting}) or choose another model (llm.model)",
            retryable=False,
        )
    if status in (400, 413) and _OVERFLOW.search(detail):
        overflow = ProviderError(
            f"{vendor}: the conversation does not fit the model's context window ({status}): {detail}; "
            "lower agent.context_window_tokens to condense sooner, or split the issue",
            retryable=False,
        )
        overflow.context_overflow = True
        return overflow
    if status == 404:
        return ProviderError(
            f"{vendor} has no model {model!r} (404); set llm.model or llm.steps.<step>.model", retryable=False
        )
    return ProviderError(
        f"{vendor} rejected the request ({status}): {detail}; check llm.model and llm.max_tokens", retryable=False
    )


#: Anthropic's and OpenAI's error types, as the HTTP status each stands for when it arrives as an
#: event of a stream already answered 200 (docs.anthropic.com, "Errors"; platform.openai.com,
#: "Error codes")
_STREAM_ERRORS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
    # OpenAI's, in the error object a stream sends (the SDK raises it with no status)
    "server_error": 500,
    "requests": 429,
    "tokens": 429,
}


def _error_type(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    err = body.get("error", body) if isinstance(body, dict) else None
    return str(err.get("type", "")) if isinstance(err, dict) else ""


def _error_message(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:300]
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__


class OutputProblem(Exception):
    """The model answered, but not usably (cut off, malformed, empty, refused)."""
