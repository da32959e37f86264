"""Recording every exchange with a model, outside workflow history, secrets redacted.

A recording is a file in the scripted provider's transcript format, one per activity attempt
(`analysis-s1-a1.json`, `code-s2-a1.json`, ...). `compile_recording` merges a folder of them,
keeping each step's last attempt, into one transcript the scripted provider can replay.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tamma.errors import ProviderError, TranscriptMismatch
from tamma.models import Usage
from tamma.providers.base import ChatResponse, LLMProvider, Message, T, ToolSpec
from tamma.providers.scripted import FORMAT

REDACTED = "[REDACTED]"
_NAME = re.compile(r"^(?P<purpose>[a-z]+)-s(?P<session>\d+)-a(?P<attempt>\d+)\.json$")
_ORDER = {"analysis": 0, "plan": 1, "code": 2, "review": 3}


def redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


class RecordingProvider:
    """Wraps a provider; writes each exchange to `path` as it happens."""

    def __init__(self, inner: LLMProvider, path: Path, session: int, secrets: Sequence[str]) -> None:
        self.inner = inner
        self.path = path
        self.session = session
        self.secrets = [s for s in secrets if s]
        self.description = inner.description
        self.exchanges: list[dict[str, Any]] = []
        path.parent.mkdir(parents=True, exist_ok=True)

    @property
    def usage(self) -> Usage:
        return self.inner.usage

    async def aclose(self) -> None:
        closing = getattr(self.inner, "aclose", None)
        if closing is not None:
            await closing()

    async def structured(self, purpose: str, system: str, prompt: str, schema: type[T]) -> T:
        before = self.inner.usage
        try:
            answer = await self.inner.structured(purpose, system, prompt, schema)
        except ProviderError as exc:
            exc.message = redact(exc.message, self.secrets)
            raise
        self._write(
            purpose,
            {"system": system, "prompt": prompt, "schema": schema.__name__},
            answer.model_dump(mode="json"),
            _delta(self.inner.usage, before),
        )
        return answer

    async def chat(self, purpose: str, system: str, messages: list[Message], tools: list[ToolSpec]) -> ChatResponse:
        try:
            response = await self.inner.chat(purpose, system, messages, tools)
        except ProviderError as exc:
            exc.message = redact(exc.message, self.secrets)
            raise
        request = {
            "system": system,
            "tools": [t.name for t in tools],
            "turn": sum(1 for m in messages if m.role == "assistant") + 1,
            "new_messages": [m.model_dump(mode="json") for m in messages[-1:]],
        }
        self._write(purpose, request, response.model_dump(mode="json", exclude={"usage"}), response.usage)
        return response

    def _write(self, purpose: str, request: dict[str, Any], response: dict[str, Any], usage: Usage) -> None:
        self.exchanges.append(
            {
                "purpose": purpose,
                "session": self.session,
                "request": request,
                "response": response,
                "usage": usage.model_dump(),
            }
        )
        doc = {"format": FORMAT, "description": f"recorded from {self.description}", "exchanges": self.exchanges}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(redact(json.dumps(doc, indent=1), self.secrets), encoding="utf-8")
        tmp.replace(self.path)


def _delta(after: Usage, before: Usage) -> Usage:
    return Usage(**{k: getattr(after, k) - getattr(before, k) for k in Usage.model_fields})


def compile_recording(source: Path, target: Path) -> Path:
    """Merge a recording folder (or copy a single file) into one replayable transcript."""
    if source.is_file():
        files = [source]
    elif source.is_dir():
        latest: dict[tuple[str, int], tuple[int, Path]] = {}
        for f in source.glob("*.json"):
            m = _NAME.match(f.name)
            if m:
                key = (m["purpose"], int(m["session"]))
                if key not in latest or int(m["attempt"]) > latest[key][0]:
                    latest[key] = (int(m["attempt"]), f)
        files = [f for _, (_, f) in sorted(latest.items(), key=lambda kv: (_ORDER.get(kv[0][0], 9), kv[0][1]))]
    else:
        raise TranscriptMismatch(f"recording {source} does not exist")
    if not files:
        raise TranscriptMismatch(f"{source} holds no recorded exchanges (files like analysis-s1-a1.json)")
    exchanges: list[Any] = []
    for f in files:
        exchanges += json.loads(f.read_text(encoding="utf-8"))["exchanges"]
    target.write_text(
        json.dumps({"format": FORMAT, "description": f"compiled from {source}", "exchanges": exchanges}, indent=1),
        encoding="utf-8",
    )
    return target
