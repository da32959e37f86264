"""Anthropic Messages API through the official SDK.

Structured output is a forced tool whose input schema is the pydantic model's; the coding agent
is a tool-use loop; the system prompt, tools and latest turn are marked for prompt caching.
The SDK's own retries are off: Temporal retries the activity.
"""

from __future__ import annotations

from typing import Any

import anthropic
from pydantic import ValidationError

from tamma.errors import ProviderError
from tamma.models import Usage
from tamma.providers.base import ChatResponse, Message, T, ToolCall, ToolSpec
from tamma.providers.common import ANSWER_TOOL, answer_tool_schema, count_call, drain, map_api_error, priced
from tamma.providers.ratelimit import gate_for, within_limits
from tamma.version import user_agent

_CACHE = {"type": "ephemeral"}
_STOP = {"tool_use": "tool_use", "max_tokens": "max_tokens", "refusal": "refusal"}


class AnthropicProvider:
    def __init__(
        self,
        *,
        api_key: str,
        model: str,
        base_url: str | None = None,
        max_tokens: int = 8192,
        timeout_s: float = 120.0,
        idle_timeout_s: float = 60.0,
        output_retries: int = 2,
        price: Any | None = None,
        rate_limit_inline_s: float = 60.0,
    ) -> None:
        # Replies are streamed: a long reply takes as long as the model keeps writing, and a model
        # that goes quiet for idle_timeout_s mid-reply fails the call (retryable). The SDK's
        # timeout bounds connecting, the reply's start and any single read.
        self.client = anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=base_url,
            max_retries=0,
            timeout=timeout_s,
            default_headers={"User-Agent": user_agent()},
        )
        self.idle_timeout_s = idle_timeout_s
        self.model = model
        self.max_tokens = max_tokens
        self.output_retries = output_retries
        self.price = price
        self.gate = gate_for("anthropic", base_url, api_key)
        self.rate_limit_inline_s = rate_limit_inline_s
        self.usage = Usage()
        self.description = f"anthropic {model}"

    async def aclose(self) -> None:
        """Close the SDK's HTTP client (its connections)."""
        await self.client.close()

    async def _create(self, **kwargs: Any) -> tuple[Any, Usage]:
        return await within_limits(self.gate, self.rate_limit_inline_s, lambda: self._create_once(**kwargs))

    async def _create_once(self, **kwargs: Any) -> tuple[Any, Usage]:
        try:
            response = await self._streamed(**kwargs)
        except anthropic.APIError as exc:
            raise map_api_error(exc, "Anthropic", self.model, "llm.anthropic_api_key (ANTHROPIC_API_KEY)") from None
        u = response.usage
        call = priced(
            Usage(
                calls=1,
                input_tokens=u.input_tokens or 0,
                output_tokens=u.output_tokens or 0,
                cache_read_tokens=getattr(u, "cache_read_input_tokens", 0) or 0,
                cache_write_tokens=getattr(u, "cache_creation_input_tokens", 0) or 0,
            ),
            self.price,
        )
        self.usage = self.usage.plus(call)
        count_call("anthropic", self.model, call)
        return response, call

    async def _streamed(self, **kwargs: Any) -> Any:
        """One reply, streamed; each event must come within idle_timeout_s of the one before."""
        async with self.client.messages.stream(model=self.model, max_tokens=self.max_tokens, **kwargs) as stream:
            await drain(stream, "Anthropic", self.idle_timeout_s, anthropic.APIError)
            return await stream.get_final_message()

    def _system(self, system: str) -> list[dict[str, Any]]:
        return [{"type": "text", "text": system, "cache_control": _CACHE}]

    async def structured(self, purpose: str, system: str, prompt: str, schema: type[T]) -> T:
        tool = {
            "name": ANSWER_TOOL,
            "description": f"Give the {schema.__name__}.",
            "input_schema": answer_tool_schema(schema),
        }
        messages: list[dict[str, Any]] = [{"role": "user", "content": prompt}]
        problem = ""
        for _ in range(self.output_retries + 1):
            resp, _ = await self._create(
                system=self._system(system),
                messages=messages,
                tools=[tool],
                tool_choice={"type": "tool", "name": ANSWER_TOOL},
            )
            block = next((b for b in resp.content if b.type == "tool_use" and b.name == ANSWER_TOOL), None)
            if resp.stop_reason == "max_tokens":
                problem = "the answer was cut off at max_tokens; answer more briefly"
            elif resp.stop_reason == "refusal":
                problem = "the model refused to answer"
            elif block is None:
                problem = f"no call of the {ANSWER_TOOL} tool"
            else:
                try:
                    return schema.model_validate(block.input)
                except ValidationError as exc:
                    problem = f"the answer does not match the schema: {exc}"
            if block is not None:
                messages += [
                    {"role": "assistant", "content": [_block(b) for b in resp.content]},
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "tool_result",
                                "tool_use_id": block.id,
                                "is_error": True,
                                "content": f"{problem}. Try again.",
                            }
                        ],
                    },
                ]
            else:
                messages = [{"role": "user", "content": f"{prompt}\n\n(Your previous reply failed: {problem}.)"}]
        raise ProviderError(
            f"{purpose}: Anthropic gave no usable answer after {self.output_retries + 1} tries ({problem[:300]})",
            retryable=False,
        )

    async def chat(self, purpose: str, system: str, messages: list[Message], tools: list[ToolSpec]) -> ChatResponse:
        wire_tools: list[dict[str, Any]] = [t.model_dump() for t in tools]
        if wire_tools:
            wire_tools[-1]["cache_control"] = _CACHE
        wire = to_wire(messages)
        if wire and isinstance(wire[-1]["content"], list) and wire[-1]["content"]:
            wire[-1]["content"][-1]["cache_control"] = _CACHE
        resp, used = await self._create(system=self._system(system), messages=wire, tools=wire_tools)
        text = "".join(b.text for b in resp.content if b.type == "text")
        calls = [
            ToolCall(
                id=b.id,
                name=b.name,
                input=b.input if isinstance(b.input, dict) else {},
                input_error="" if isinstance(b.input, dict) else "tool input is not a JSON object",
            )
            for b in resp.content
            if b.type == "tool_use"
        ]
        return ChatResponse(
            text=text, tool_calls=calls, stop_reason=_STOP.get(resp.stop_reason or "", "end_turn"), usage=used
        )


def _block(b: Any) -> dict[str, Any]:
    if b.type == "tool_use":
        return {"type": "tool_use", "id": b.id, "name": b.name, "input": b.input}
    return {"type": "text", "text": getattr(b, "text", "")}


def to_wire(messages: list[Message]) -> list[dict[str, Any]]:
    """Tamma's messages as Messages API turns (tool results travel in user turns)."""
    out: list[dict[str, Any]] = []
    for m in messages:
        content: list[dict[str, Any]] = []
        if m.role == "assistant":
            if m.text:
                content.append({"type": "text", "text": m.text})
            content += [{"type": "tool_use", "id": c.id, "name": c.name, "input": c.input} for c in m.tool_calls]
            out.append({"role": "assistant", "content": content or [{"type": "text", "text": "(no answer)"}]})
            continue
        content += [
            {"type": "tool_result", "tool_use_id": r.tool_call_id, "content": r.content, "is_error": r.is_error}
            for r in m.tool_results
        ]
        if m.text:
            content.append({"type": "text", "text": m.text})
        out.append({"role": "user", "content": content})
    return out
