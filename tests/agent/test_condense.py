"""Condensing the coding conversation: what is elided, what never is."""

from __future__ import annotations

from tamma.agent.condense import ELIDED, SMALL, condense, estimate
from tamma.providers.base import Message, ToolCall, ToolResult


def _conversation(exchanges: int, size: int) -> list[Message]:
    messages = [Message(role="user", text="the task " * 100)]
    for i in range(exchanges):
        messages.append(Message(role="assistant", text=f"step {i}", tool_calls=[ToolCall(id=f"c{i}", name="read_file")]))
        messages.append(Message(role="user", tool_results=[ToolResult(tool_call_id=f"c{i}", content="x\n" * size)]))
    return messages


def test_old_outputs_are_elided_recent_ones_and_the_task_are_kept() -> None:
    messages = _conversation(6, 500)
    before = estimate("", messages)
    saved = condense(messages, keep_recent=4)
    results = [m.tool_results[0].content for m in messages if m.tool_results]
    assert [r.startswith(ELIDED) for r in results] == [True] * 4 + [False] * 2
    assert "500 lines" in results[0] or "501 lines" in results[0]
    assert messages[0].text == "the task " * 100  # the task is never touched
    assert [m.text for m in messages if m.role == "assistant"] == [f"step {i}" for i in range(6)]
    assert [m.tool_results[0].tool_call_id for m in messages if m.tool_results] == [f"c{i}" for i in range(6)]
    assert saved > 0 and estimate("", messages) < before
    assert condense(messages, keep_recent=4) == 0  # nothing left: a second pass changes nothing


def test_small_outputs_are_not_worth_eliding() -> None:
    messages = _conversation(6, SMALL // 4)
    assert condense(messages, keep_recent=2) == 0
