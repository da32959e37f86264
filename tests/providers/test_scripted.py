"""The scripted provider replays a recording and refuses to improvise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tamma.agent.tools import TOOL_SPECS
from tamma.errors import TranscriptMismatch
from tamma.models import Analysis
from tamma.providers.base import Message, ToolResult
from tamma.providers.scripted import DEMO_TRANSCRIPT, ScriptedProvider


async def test_structured_answer_is_validated() -> None:
    provider = ScriptedProvider(DEMO_TRANSCRIPT)
    analysis = await provider.structured("analysis", "s", "fix the off-by-one in paginate please", Analysis)
    assert analysis.risk == "low"
    with pytest.raises(TranscriptMismatch, match="does not mention 'off-by-one'"):
        await provider.structured("analysis", "s", "add dark mode", Analysis)
    with pytest.raises(TranscriptMismatch, match="holds no 'review' answer"):
        await provider.structured("review", "s", "paginate", Analysis)


async def test_chat_turns_and_divergence() -> None:
    provider = ScriptedProvider(DEMO_TRANSCRIPT)
    msgs = [Message(role="user", text="the off-by-one in paginate")]
    first = await provider.chat("code", "s", msgs, TOOL_SPECS)
    assert first.tool_calls[0].name == "read_file"
    msgs += [
        Message(role="assistant", tool_calls=first.tool_calls),
        Message(role="user", tool_results=[ToolResult(tool_call_id="call_1", content="boom", is_error=True)]),
    ]
    with pytest.raises(TranscriptMismatch, match="failed here"):
        await provider.chat("code", "s", msgs, TOOL_SPECS)
    with pytest.raises(TranscriptMismatch, match="records 0"):
        await ScriptedProvider(DEMO_TRANSCRIPT, session=2).chat("code", "s", msgs[:1], TOOL_SPECS)


async def test_unknown_tool_in_recording_is_divergence() -> None:
    with pytest.raises(TranscriptMismatch, match="tools this agent does not have"):
        await ScriptedProvider(DEMO_TRANSCRIPT).chat(
            "code", "s", [Message(role="user", text="the off-by-one in paginate")], []
        )


@pytest.mark.parametrize(
    "content,match",
    [
        ("not json", "not a valid recording"),
        (json.dumps({"format": "other/9", "exchanges": []}), "format 'other/9'"),
    ],
)
def test_bad_transcript_files(tmp_path: Path, content: str, match: str) -> None:
    f = tmp_path / "t.json"
    f.write_text(content)
    with pytest.raises(TranscriptMismatch, match=match):
        ScriptedProvider(f)
    with pytest.raises(TranscriptMismatch, match="does not exist"):
        ScriptedProvider(tmp_path / "missing.json")


async def test_a_turn_stops_when_the_tools_saw_something_else(tmp_path: Path) -> None:
    """result_contains: the replay goes on only if the previous tool results mention the text."""
    exchanges = [
        {"purpose": "code", "response": {"tool_calls": [{"id": "c0", "name": "search", "input": {"pattern": "x"}}]}},
        {"purpose": "code", "response": {"text": "done"}, "expect": {"result_contains": ["src/found.py:3:"]}},
    ]
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"format": "tamma-transcript/1", "exchanges": exchanges}))
    first = await ScriptedProvider(path).chat("code", "s", [Message(role="user", text="go")], TOOL_SPECS)

    def after(seen: str) -> list[Message]:
        return [
            Message(role="user", text="go"),
            Message(role="assistant", tool_calls=first.tool_calls),
            Message(role="user", tool_results=[ToolResult(tool_call_id="c0", content=seen)]),
        ]

    done = await ScriptedProvider(path).chat(
        "code", "s", after("src/found.py:3: x = 1\n[1 matches in 1 files]"), TOOL_SPECS
    )
    assert done.text == "done"
    with pytest.raises(TranscriptMismatch, match=r"expects the tool results to mention 'src/found\.py:3:'"):
        await ScriptedProvider(path).chat("code", "s", after("no matches"), TOOL_SPECS)
