"""Keeping the coding conversation inside the model's context window.

A coding session is mostly observations: file reads, search hits, test output. Old ones are
what the model needs least, so when a request's prompt passes a share of the window the bodies of
all but the most recent tool results are replaced by a one-line note of what was there (the
"observation masking" of SWE-agent's and OpenHands' condensers). The task, every assistant turn
and every tool call stay, so the model still knows what it did and can call a tool again for
what it needs. Each tool result stays paired with its call, as both vendors' APIs require.

When eliding is not enough (a long session of many small outputs: the calls themselves fill
the window), the oldest turns are *folded*: each becomes a line of a digest in the task message
("turn 3: edit_file app.py → failed: no match …"), and the turns themselves go — OpenHands'
summarising condenser, made from the record rather than by another model call, so it costs
nothing, cannot invent, and replays the same. The conversation then starts with the task and the
digest and goes on with the kept turns, each result still after its call.

Written here rather than taken from a library: the condensers of SWE-agent and OpenHands are
parts of those frameworks, bound to their own message types.
"""

from __future__ import annotations

from dataclasses import dataclass

from tamma.providers.base import ChatResponse, Message, ToolResult

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
    return (len(system) + _chars(messages)) // CHARS_PER_TOKEN


def _chars(messages: list[Message]) -> int:
    chars = 0
    for m in messages:
        chars += len(m.text) + sum(len(str(c.input)) + len(c.name) for c in m.tool_calls)
        chars += sum(len(r.content) for r in m.tool_results)
    return chars


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


DIGEST = "## Earlier in this session"
_DIGEST_INTRO = (
    f"\n\n{DIGEST}\n\nThese turns were folded into this list to keep the conversation within the "
    "model's context window. The files are as those turns left them: read them again for detail.\n"
)
_SHOWN_ARGS = ("path", "pattern", "glob", "command", "start_line", "end_line")


def _first_line(text: str, limit: int = 160) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line[:limit] + ("…" if len(line) > limit else "")


def _digest_line(turn: int, assistant: Message, results: list[ToolResult]) -> str:
    said = f' — "{_first_line(assistant.text, 200)}"' if assistant.text.strip() else ""
    lines = [f"- turn {turn}{said}"]
    outcome = {r.tool_call_id: r for r in results}
    for call in assistant.tool_calls:
        shown = [f"{k}={call.input[k]!r}"[:120] for k in _SHOWN_ARGS if k in call.input]
        shown += [f"{k}: {len(str(v))} chars" for k, v in call.input.items() if k not in _SHOWN_ARGS]
        result = outcome.get(call.id)
        if result is None:
            seen = "no result"
        elif result.content.startswith(ELIDED):
            seen = "ok (output elided)" if not result.is_error else "failed"
        else:
            seen = ("failed: " if result.is_error else "") + (_first_line(result.content) or "(no output)")
        lines.append(f"  - {call.name}({', '.join(shown)}) → {seen}")
    return "\n".join(lines)


def fold(messages: list[Message], keep_recent: int) -> int:
    """Fold the turns older than the last `keep_recent` messages into a digest in the first
    message (the task), in place; the kept part starts with an assistant turn, so every kept
    result still follows its call. Returns the characters removed (0: nothing to fold)."""
    turns = [i for i, m in enumerate(messages) if i > 0 and m.role == "assistant"]
    later = [i for i in turns if i >= len(messages) - keep_recent]
    cut = later[0] if later else (turns[-1] if turns else 0)  # the last turn is always kept
    if cut < 3:  # not one whole turn before it
        return 0
    task = messages[0]
    turn = task.text.count("\n- turn ") if DIGEST in task.text else 0
    lines = []
    for i in range(1, cut):
        m = messages[i]
        if m.role == "assistant":
            turn += 1
            results = messages[i + 1].tool_results if i + 1 < cut else []
            lines.append(_digest_line(turn, m, results))
    text = task.text if DIGEST in task.text else task.text + _DIGEST_INTRO
    digest = task.model_copy(update={"text": text + "\n".join(lines) + "\n"})
    saved = _chars(messages[:cut]) - _chars([digest])
    if saved <= 0:  # turns too small to be worth a digest line each
        return 0
    messages[0] = digest
    del messages[1:cut]
    return saved
