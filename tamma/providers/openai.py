"""OpenAI chat completions through the official SDK: OpenAI itself, or any OpenAI-compatible
server (Ollama, vLLM, LM Studio) through `llm.openai_base_url`.

Structured output is a forced function call whose parameters are the pydantic model's schema
(more servers support that than `response_format: json_schema`). The SDK's retries are off.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import openai
from pydantic import ValidationError

from tamma.errors import TOO_DEEP, ProviderError
from tamma.models import Usage
from tamma.providers.base import ChatResponse, Message, T, ToolCall, ToolSpec
from tamma.providers.common import ANSWER_TOOL, answer_tool_schema, count_call, drain, map_api_error, priced
from tamma.providers.ratelimit import gate_for, within_limits
from tamma.version import user_agent

log = logging.getLogger(__name__)

#: how a server says it does not take a streamed request ("Unrecognized request argument supplied:
#: stream_options", "streaming is not supported")
_NO_STREAMING = re.compile(r"stream_options|stream(ing)? (is )?not supported|does not support stream", re.I)

_FINISH = {"tool_calls": "tool_use", "function_call": "tool_use", "length": "max_tokens", "content_filter": "refusal"}


class OpenAIProvider:
    def __init__(
        self,
        *,
        api_key: str | None,
        model: str,
        base_url: str | None = None,
        max_tokens: int = 8192,
        timeout_s: float = 120.0,
        idle_timeout_s: float = 60.0,
        stream: bool = True,
        output_retries: int = 2,
        price: Any | None = None,
        rate_limit_inline_s: float = 60.0,
    ) -> None:
        # Local servers need no key, but the SDK insists on one: a placeholder is sent instead.
        self.client = openai.AsyncOpenAI(
            api_key=api_key or "no-key",
            base_url=base_url,
            max_retries=0,
            timeout=timeout_s,
            default_headers={"User-Agent": user_agent()},
        )
        # Replies are streamed (as Anthropic's are): a long reply takes as long as the model keeps
        # writing, a silence of idle_timeout_s mid-reply fails the call (retryable).
        self.idle_timeout_s = idle_timeout_s
        self.stream = stream
        self.model = model
        self.max_tokens = max_tokens
        self.output_retries = output_retries
        self.price = price
        self.gate = gate_for("openai", base_url, api_key)
        self.rate_limit_inline_s = rate_limit_inline_s
        self.usage = Usage()
        where = f" at {base_url}" if base_url else ""
        self.description = f"openai-compatible {model}{where}"

    async def aclose(self) -> None:
        """Close the SDK's HTTP client (its connections)."""
        await self.client.close()

    async def _create(self, **kwargs: Any) -> tuple[Any, Usage]:
        return await within_limits(self.gate, self.rate_limit_inline_s, lambda: self._create_once(**kwargs))

    async def _create_once(self, **kwargs: Any) -> tuple[Any, Usage]:
        try:
            if self.stream:
                response = await self._streamed(**kwargs)
            else:
                response = await self.client.chat.completions.create(
                    model=self.model, max_tokens=self.max_tokens, **kwargs
                )
        except openai.APIError as exc:
            if isinstance(exc, openai.BadRequestError) and self.stream and _NO_STREAMING.search(str(exc)):
                # an OpenAI-compatible server that cannot stream (or take stream_options): ask again
                # whole, and never stream to it again
                log.warning("%s refused a streamed request (%s); asking without streaming", self.description, exc)
                self.stream = False
                return await self._create_once(**kwargs)
            raise map_api_error(
                exc,
                "the OpenAI-compatible server",
                self.model,
                "llm.openai_api_key (OPENAI_API_KEY) / llm.openai_base_url",
            ) from None
        u = response.usage
        cached = 0
        if u is not None and getattr(u, "prompt_tokens_details", None) is not None:
            cached = u.prompt_tokens_details.cached_tokens or 0
        call = Usage(calls=1)
        if u is not None:
            call = Usage(
                calls=1,
                input_tokens=(u.prompt_tokens or 0) - cached,
                output_tokens=u.completion_tokens or 0,
                cache_read_tokens=cached,
            )
        call = priced(call, self.price)
        self.usage = self.usage.plus(call)
        count_call("openai", self.model, call)
        if not response.choices:
            raise ProviderError("the OpenAI-compatible server answered with no choices")
        return response, call

    async def _streamed(self, **kwargs: Any) -> Any:
        """One reply, streamed with its usage; each chunk must come within idle_timeout_s of the
        one before. The SDK puts the chunks together (text, tool calls' arguments, finish reason,
        usage); its snapshot is taken as it stands, since its final completion refuses a reply cut
        off at max_tokens, which the callers handle themselves."""
        async with self.client.chat.completions.stream(
            model=self.model, max_tokens=self.max_tokens, stream_options={"include_usage": True}, **kwargs
        ) as stream:
            await drain(stream, "the OpenAI-compatible server", self.idle_timeout_s, openai.APIError)
            return stream.current_completion_snapshot

    async def structured(self, purpose: str, system: str, prompt: str, schema: type[T]) -> T:
        tool = {
            "type": "function",
            "function": {
                "name": ANSWER_TOOL,
                "description": f"Give the {schema.__name__}.",
                "parameters": answer_tool_schema(schema),
            },
        }
        messages: list[dict[str, Any]] = [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
        problem = ""
        for _ in range(self.output_retries + 1):
            resp, _ = await self._create(
                messages=messages, tools=[tool], tool_choice={"type": "function", "function": {"name": ANSWER_TOOL}}
            )
            choice = resp.choices[0]
            msg = choice.message
            call = next((c for c in (msg.tool_calls or []) if c.function.name == ANSWER_TOOL), None)
            if getattr(msg, "refusal", None) or choice.finish_reason == "content_filter":
                problem = f"the model refused: {getattr(msg, 'refusal', '') or 'content filter'}"
            elif choice.finish_reason == "length":
                problem = "the answer was cut off at max_tokens; answer more briefly"
            elif call is None:
                problem = f"no call of the {ANSWER_TOOL} function"
            else:
                try:
                    return schema.model_validate(json.loads(call.function.arguments or "{}"))
                except json.JSONDecodeError as exc:
                    problem = f"the arguments are not valid JSON ({exc})"
                except TOO_DEEP:
                    problem = "the arguments are JSON nested too deeply to read"
                except ValidationError as exc:
                    problem = f"the answer does not match the schema: {exc}"
            if call is not None:
                messages += [
                    {
                        "role": "assistant",
                        "content": msg.content,
                        "tool_calls": [
                            {
                                "id": call.id,
                                "type": "function",
                                "function": {"name": ANSWER_TOOL, "arguments": call.function.arguments},
                            }
                        ],
                    },
                    {"role": "tool", "tool_call_id": call.id, "content": f"ERROR: {problem}. Try again."},
                ]
            else:
                messages = [
                    messages[0],
                    {"role": "user", "content": f"{prompt}\n\n(Your previous reply failed: {problem}.)"},
                ]
        raise ProviderError(
            f"{purpose}: the OpenAI-compatible model gave no usable answer after "
            f"{self.output_retries + 1} tries ({problem[:300]})",
            retryable=False,
        )

    async def chat(self, purpose: str, system: str, messages: list[Message], tools: list[ToolSpec]) -> ChatResponse:
        wire_tools = [
            {
                "type": "function",
                "function": {"name": t.name, "description": t.description, "parameters": t.input_schema},
            }
            for t in tools
        ]
        wire = [{"role": "system", "content": system}, *to_wire(messages)]
        resp, used = await self._create(messages=wire, tools=wire_tools)
        choice = resp.choices[0]
        calls = [_tool_call(c) for c in (choice.message.tool_calls or [])]
        stop = _FINISH.get(choice.finish_reason or "", "end_turn")
        if getattr(choice.message, "refusal", None):
            stop = "refusal"
        return ChatResponse(
            text=choice.message.content or "",
            tool_calls=calls,
            stop_reason=stop,
            usage=used,
        )


def _tool_call(c: Any) -> ToolCall:
    try:
        args = json.loads(c.function.arguments or "{}")
    except json.JSONDecodeError as exc:
        return ToolCall(id=c.id, name=c.function.name, input_error=f"arguments are not valid JSON: {exc}")
    except TOO_DEEP:
        return ToolCall(id=c.id, name=c.function.name, input_error="arguments are JSON nested too deeply to read")
    if not isinstance(args, dict):
        return ToolCall(id=c.id, name=c.function.name, input_error="arguments must be a JSON object")
    return ToolCall(id=c.id, name=c.function.name, input=args)


def to_wire(messages: list[Message]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "assistant":
            turn: dict[str, Any] = {"role": "assistant", "content": m.text or None}
            if m.tool_calls:
                turn["tool_calls"] = [
                    {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": json.dumps(c.input)}}
                    for c in m.tool_calls
                ]
            out.append(turn)
            continue
        out += [
            {"role": "tool", "tool_call_id": r.tool_call_id, "content": ("ERROR: " if r.is_error else "") + r.content}
            for r in m.tool_results
        ]
        if m.text:
            out.append({"role": "user", "content": m.text})
    return out
