"""Recordings for tests that go past the demo: the demo's own exchanges plus a second coding
session that adds a comment above the fixed line, checking first that the feedback it answers
reached the agent's prompt (the scripted provider stops with a mismatch otherwise)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tamma.providers.scripted import DEMO_TRANSCRIPT

FIXED = "    start = (page - 1) * per_page\n"


def demo_exchanges() -> list[dict[str, Any]]:
    exchanges: list[dict[str, Any]] = json.loads(DEMO_TRANSCRIPT.read_text())["exchanges"]
    return exchanges


def comment_session(session: int, comment: str, expect: list[str]) -> list[dict[str, Any]]:
    """Coding session `session`: add `# comment` above the fixed line, run the tests, finish."""
    edit = {"path": "pager.py", "old_text": FIXED, "new_text": f"    # {comment}\n{FIXED}"}
    calls: list[dict[str, Any]] = [
        {"id": f"s{session}-edit", "name": "edit_file", "input": edit},
        {"id": f"s{session}-test", "name": "run_tests", "input": {}},
    ]
    turns: list[dict[str, Any]] = [
        {"purpose": "code", "session": session, "response": {"stop_reason": "tool_use", "tool_calls": [call]}}
        for call in calls
    ]
    turns[0]["expect"] = {"prompt_contains": expect}
    turns.append(
        {"purpose": "code", "session": session, "response": {"text": "Added the comment.", "stop_reason": "end_turn"}}
    )
    return turns


def transcript_doc(exchanges: list[dict[str, Any]]) -> str:
    return json.dumps({"format": "tamma-transcript/1", "description": "test recording", "exchanges": exchanges})


def replanned(expect: list[str]) -> list[dict[str, Any]]:
    """The demo's analysis and plan again as planning round 2 (after an edit of the issue); the
    replay checks the edited text reached both prompts."""
    again = [dict(e, session=2, expect={"prompt_contains": expect}) for e in demo_exchanges()]
    return [e for e in again if e["purpose"] in ("analysis", "plan")]


FIX = {
    "path": "pager.py",
    "old_text": "    start = page * per_page\n",
    "new_text": "    start = (page - 1) * per_page\n",
}


def coding_transcript(path: Path, calls: list[tuple[str, dict[str, Any]]]) -> Path:
    """The demo's analysis and plan (low risk, naming only pager.py), then one coding session
    making `calls` one per turn, then done; written to `path`."""
    planning = [e for e in demo_exchanges() if e["purpose"] in ("analysis", "plan")]
    code: list[dict[str, Any]] = [
        {
            "purpose": "code",
            "session": 1,
            "response": {"stop_reason": "tool_use", "tool_calls": [{"id": f"c{i}", "name": tool, "input": args}]},
        }
        for i, (tool, args) in enumerate(calls)
    ]
    code.append({"purpose": "code", "session": 1, "response": {"text": "Done.", "stop_reason": "end_turn"}})
    path.write_text(transcript_doc(planning + code))
    return path
