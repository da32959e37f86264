"""Condensing the coding conversation: what is elided, what never is."""

from __future__ import annotations

from tamma.agent.condense import DIGEST, ELIDED, SMALL, condense, estimate, fold
from tamma.providers.base import Message, ToolCall, ToolResult


def _conversation(exchanges: int, size: int) -> list[Message]:
    messages = [Message(role="user", text="the task " * 100)]
    for i in range(exchanges):
        messages.append(
            Message(role="assistant", text=f"step {i}", tool_calls=[ToolCall(id=f"c{i}", name="read_file")])
        )
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


def _small_turns(n: int) -> list[Message]:
    """A session of many turns whose outputs are all small: eliding them saves nothing."""
    messages = [Message(role="user", text="Fix the pager.")]
    for i in range(n):
        calls = [ToolCall(id=f"c{i}", name="search", input={"pattern": f"def f{i}", "path": "src"})]
        if i == 2:
            calls = [
                ToolCall(id=f"c{i}", name="edit_file", input={"path": "a.py", "old_text": "x" * 40, "new_text": "y"})
            ]
        messages.append(Message(role="assistant", text=f"Looking for f{i}.", tool_calls=calls))
        hits = "".join(f"src/m{k}.py:{i}: def f{i}(value, *, option=None):\n" for k in range(4))
        result = ToolResult(tool_call_id=f"c{i}", content=f"{hits}[4 matches in 4 files]")
        assert len(result.content) < SMALL
        if i == 2:
            result = ToolResult(
                tool_call_id=f"c{i}", content="old_text not found in a.py; closest: line 3", is_error=True
            )
        messages.append(Message(role="user", tool_results=[result]))
    return messages


def test_turns_that_eliding_cannot_shrink_are_folded_into_a_digest_in_the_task() -> None:
    messages = _small_turns(10)
    assert condense(messages, keep_recent=4) == 0  # all small: nothing to elide
    before = estimate("", messages)
    saved = fold(messages, keep_recent=4)
    assert saved > 0 and estimate("", messages) < before
    task = messages[0].text
    assert task.startswith("Fix the pager.") and DIGEST in task
    assert '- turn 1 — "Looking for f0."' in task
    assert "search(path='src', pattern='def f0') → src/m0.py:0: def f0(value, *, option=None):" in task
    assert "edit_file(path='a.py', old_text: 40 chars, new_text: 1 chars) → failed: old_text not found" in task
    # the kept part starts with an assistant turn, and every kept result follows its call
    assert [m.role for m in messages[1:]] == ["assistant", "user"] * 2
    kept_calls = [c.id for m in messages if m.role == "assistant" for c in m.tool_calls]
    kept_results = [r.tool_call_id for m in messages if m.role == "user" for r in m.tool_results]
    assert kept_calls == kept_results == ["c8", "c9"]
    # a second fold goes on numbering where the digest stopped; the last turn is always kept
    messages += _small_turns(3)[1:]
    assert fold(messages, keep_recent=2) > 0
    assert "- turn 9 " in messages[0].text and messages[0].text.count(DIGEST) == 1
    assert [m.role for m in messages[1:]] == ["assistant", "user"]
    assert fold(messages, keep_recent=2) == 0  # one turn left: nothing more to fold
