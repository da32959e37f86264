"""The bounded tool-use loop that turns a plan into edits in a workspace."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from tamma.agent.tools import Toolbox
from tamma.errors import ProviderError
from tamma.providers.base import LLMProvider, Message


class AgentOutcome(BaseModel):
    summary: str
    turns: int


class TranscriptLog:
    """Appends each exchange as a JSON line to a file outside workflow history."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, kind: str, payload: object) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"kind": kind, "payload": payload}, default=str) + "\n")


async def run_agent(
    provider: LLMProvider,
    toolbox: Toolbox,
    system: str,
    task: str,
    max_turns: int,
    on_turn: Callable[[int, str], None],
    log: TranscriptLog | None = None,
) -> AgentOutcome:
    messages = [Message(role="user", text=task)]
    for turn in range(1, max_turns + 1):
        response = await provider.chat("code", system, messages, toolbox.specs)
        if log:
            log.write("response", response.model_dump())
        messages.append(Message(role="assistant", text=response.text, tool_calls=response.tool_calls))
        if not response.tool_calls:
            on_turn(turn, "finished")
            return AgentOutcome(summary=response.text.strip() or "done", turns=turn)
        results = [await toolbox.call(call) for call in response.tool_calls]
        if log:
            log.write("tool_results", [r.model_dump() for r in results])
        on_turn(turn, ", ".join(c.name for c in response.tool_calls))
        messages.append(Message(role="user", tool_results=results))
    raise ProviderError(
        f"the coding agent used all {max_turns} turns without finishing; raise agent.max_turns or split the issue",
        retryable=False,
    )
