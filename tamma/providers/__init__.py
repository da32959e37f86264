"""LLM providers behind one protocol."""

from tamma.providers.base import ChatResponse, LLMProvider, Message, ToolCall, ToolResult, ToolSpec

__all__ = ["ChatResponse", "LLMProvider", "Message", "ToolCall", "ToolResult", "ToolSpec"]
