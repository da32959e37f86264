"""The scripted provider: replays a recorded transcript, for tests and the offline demo.

A transcript is JSON: ``{"format": "tamma-transcript/1", "exchanges": [...]}``. Each exchange
has a ``purpose`` ("analysis", "plan", "code", "review"), a ``session`` (the implement
iteration for code and review; 1 for analysis and plan) and a ``response``. Optional ``expect``
entries say what the request must look like (``prompt_contains``; for code turns, which recorded
tool calls must have succeeded). When a request does not match, replay stops with
TranscriptMismatch: it never improvises.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from tamma.errors import TranscriptMismatch
from tamma.models import Usage
from tamma.providers.base import ChatResponse, Message, T, ToolSpec
from tamma.providers.common import count_call

FORMAT = "tamma-transcript/1"
DEMO_TRANSCRIPT = Path(__file__).parent / "transcripts" / "demo.json"


class Expectation(BaseModel):
    prompt_contains: list[str] = Field(default_factory=list)
    tools_succeeded: bool = True
    #: for code turns after the first: text the previous turn's tool results must contain (what a
    #: search found, what a run printed), so a replay stops where the tools saw something else
    result_contains: list[str] = Field(default_factory=list)


class Exchange(BaseModel):
    purpose: str
    session: int = 1
    response: dict[str, Any]
    expect: Expectation = Field(default_factory=Expectation)
    usage: Usage = Field(default_factory=Usage, description="what the recorded call cost")
    request: dict[str, Any] = Field(default_factory=dict, description="what was asked (for people; not replayed)")


class Transcript(BaseModel):
    format: str
    description: str = ""
    exchanges: list[Exchange]

    @classmethod
    def load(cls, path: Path) -> Transcript:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            transcript = cls.model_validate(data)
        except FileNotFoundError:
            raise TranscriptMismatch(f"transcript {path} does not exist; check the path") from None
        except (json.JSONDecodeError, ValidationError) as exc:
            raise TranscriptMismatch(f"transcript {path} is not a valid recording: {exc}") from None
        if transcript.format != FORMAT:
            raise TranscriptMismatch(f"transcript {path} has format {transcript.format!r}, expected {FORMAT!r}")
        return transcript


class ScriptedProvider:
    """Replays `path`; `session` picks which recorded coding session `chat` serves."""

    def __init__(self, path: Path, session: int = 1) -> None:
        self.path = path
        self.session = session
        self.transcript = Transcript.load(path)
        self.description = f"scripted replay of {path.name} (a recording, not a model)"
        self.usage = Usage()
        self._asked: dict[str, int] = {}

    def _exchanges(self, purpose: str, session: int | None = None) -> list[Exchange]:
        return [
            e for e in self.transcript.exchanges if e.purpose == purpose and (session is None or e.session == session)
        ]

    def _diverged(self, what: str) -> TranscriptMismatch:
        return TranscriptMismatch(
            f"the run diverged from transcript {self.path}: {what}. A recording only replays the "
            "run it came from; configure a real model (llm.provider) for new work"
        )

    async def structured(self, purpose: str, system: str, prompt: str, schema: type[T]) -> T:
        found = self._exchanges(purpose, self.session)
        if not found:
            raise self._diverged(f"it holds no {purpose!r} answer for session {self.session}")
        # a step that asks again (a plan naming missing files) gets the next recorded answer
        asked = self._asked.get(purpose, 0)
        self._asked[purpose] = asked + 1
        exchange = found[min(asked, len(found) - 1)]
        self._check_prompt(exchange, prompt)
        self.usage = self.usage.plus(exchange.usage)
        count_call("scripted", "recording", exchange.usage.model_copy(update={"calls": 1}))  # one exchange, one call
        try:
            return schema.model_validate(exchange.response)
        except ValidationError as exc:
            raise self._diverged(f"its {purpose!r} answer is not a valid {schema.__name__}: {exc}") from None

    async def chat(self, purpose: str, system: str, messages: list[Message], tools: list[ToolSpec]) -> ChatResponse:
        turn = sum(1 for m in messages if m.role == "assistant")
        found = self._exchanges(purpose, self.session)
        if turn >= len(found):
            raise self._diverged(
                f"asked for {purpose!r} turn {turn + 1} of session {self.session}, but it records {len(found)}"
            )
        exchange = found[turn]
        if turn == 0:
            self._check_prompt(exchange, messages[0].text if messages else "")
        else:
            results = messages[-1].tool_results if messages else []
            failed = [r for r in results if r.is_error]
            if failed and exchange.expect.tools_succeeded:
                raise self._diverged(
                    f"tool call {failed[0].tool_call_id} failed here ({failed[0].content[:200]}) "
                    "but succeeded in the recording"
                )
            seen = "\n".join(r.content for r in results)
            for needle in exchange.expect.result_contains:
                if needle not in seen:
                    raise self._diverged(
                        f"turn {turn + 1} expects the tool results to mention {needle!r}; they read: {seen[:300]!r}"
                    )
        names = {t.name for t in tools}
        response = ChatResponse.model_validate({**exchange.response, "usage": exchange.usage.model_dump()})
        self.usage = self.usage.plus(exchange.usage)
        count_call("scripted", "recording", exchange.usage.model_copy(update={"calls": 1}))  # one exchange, one call
        unknown = [c.name for c in response.tool_calls if c.name not in names]
        if unknown:
            raise self._diverged(f"it calls tools this agent does not have: {unknown}")
        return response

    def _check_prompt(self, exchange: Exchange, prompt: str) -> None:
        for needle in exchange.expect.prompt_contains:
            if needle not in prompt:
                raise self._diverged(f"the {exchange.purpose!r} request does not mention {needle!r}")
