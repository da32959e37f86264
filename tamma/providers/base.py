"""The LLMProvider protocol: structured output and tool use, nothing vendor-specific.

Anthropic and OpenAI-compatible providers implement the same two calls; the scripted provider
replays a recording of them. The agent and the activities only ever see this protocol.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, Field

from tamma.models import Usage

T = TypeVar("T", bound=BaseModel)


class ToolSpec(BaseModel):
    name: str
    description: str
    input_schema: dict[str, Any]


class ToolCall(BaseModel):
    id: str
    name: str
    input: dict[str, Any] = Field(default_factory=dict)
    #: set when the model's arguments were not valid JSON; the agent reports it back
    input_error: str = ""


class ToolResult(BaseModel):
    tool_call_id: str
    content: str
    is_error: bool = False


class Message(BaseModel):
    role: Literal["user", "assistant"]
    text: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_results: list[ToolResult] = Field(default_factory=list)


class ChatResponse(BaseModel):
    text: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    stop_reason: Literal["end_turn", "tool_use", "max_tokens", "refusal"] = "end_turn"
    usage: Usage = Field(default_factory=Usage)


@runtime_checkable
class LLMProvider(Protocol):
    #: what the terminal shows, e.g. "scripted replay of demo.json" or "anthropic claude-…"
    description: str

    @property
    def usage(self) -> Usage:
        """Tokens and cost of every call this instance made."""
        ...

    async def structured(self, purpose: str, system: str, prompt: str, schema: type[T]) -> T:
        """Ask for one answer shaped like `schema` (analysis, plan)."""
        ...

    async def chat(self, purpose: str, system: str, messages: list[Message], tools: list[ToolSpec]) -> ChatResponse:
        """One turn of a tool-use conversation."""
        ...
