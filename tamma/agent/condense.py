"""Keeping the coding conversation inside the model's context window.

A coding session is mostly observations: file reads, search hits, test output. Old ones are
what the model needs least, so when a request's prompt passes a share of the window the bodies of
all but the most recent tool results are replaced by a one-line note of what was there (the
"observation masking" of SWE-agent's and OpenHands' condensers). The task, every assistant turn
and every tool call stay, so the model still knows what it did and can call a tool again for
what it needs. Each tool result stays paired with its call, as both vendors' APIs require.

Written here rather than taken from a library: the condensers of SWE-agent and OpenHands are
parts of those frameworks, bound to their own message types.
"""

from __future__ import annotations

from dataclasses import dataclass

from tamma.providers.base import ChatResponse, Message

ELIDED = "[elided to keep the conversation within the model's context window:"
#: tool results at most this long are kept whole: eliding them saves nothing
SMALL = 300
#: characters per token for an estimate when the provider reports no counts (the scripted replay)
CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class ContextPolicy:
    window_tokens: int = 200_000
    #: condense when a request's prompt passes this share of the window
    condense_at: float = 0.6
    #: the most recent messages (assistant turns and their tool results) kept whole
    keep_recent: int = 6

    @property
    def threshold(self) -> int:
        return int(self.window_tokens * self.condense_at)


def prompt_tokens(response: ChatResponse, system: str, messages: list[Message]) -> int:
    """How big the last request's prompt was: the provider's own count (input, cache read and
    cache write), else an estimate from the characters."""
    u = response.usage
    counted = u.input_tokens + u.cache_read_tokens + u.cache_write_tokens
    return counted if counted else estimate(system, messages)


def estimate(system: str, messages: list[Message]) -> int:
    chars = len(system)
    for m in messages:
        chars += len(m.text) + sum(len(str(c.input)) + len(c.name) for c in m.tool_calls)
        chars += sum(len(r.content) for r in m.tool_results)
    return chars // CHARS_PER_TOKEN


def _note(content: str) -> str:
    lines = content.count("\n") + 1
    return f"{ELIDED} {lines} lines, {len(content)} characters. Call the tool again if you need them.]"


def condense(messages: list[Message], keep_recent: int) -> int:
    """Elide the bodies of tool results older than the last `keep_recent` messages, in place;
    the first message (the task) is never touched. Returns the characters removed (0: nothing
    left to condense)."""
    saved = 0
    for i in range(1, max(1, len(messages) - keep_recent)):
        m = messages[i]
        if not m.tool_results:
            continue
        results = []
        for r in m.tool_results:
            if len(r.content) > SMALL and not r.content.startswith(ELIDED):
                note = _note(r.content)
                saved += len(r.content) - len(note)
                r = r.model_copy(update={"content": note})
            results.append(r)
        messages[i] = m.model_copy(update={"tool_results": results})
    return saved
