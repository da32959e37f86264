"""The agent's tools: list, read, search, write, edit by exact replacement, run tests.

Each tool returns text for the model; a mistake (a missing file, an ambiguous edit) is returned
as an error result the model can correct, not raised, because the model is the one to fix it.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from tamma.agent.sandbox import CommandResult
from tamma.agent.workspace import Workspace
from tamma.errors import InvalidInputError
from tamma.providers.base import ToolCall, ToolResult, ToolSpec

MAX_READ = 100_000
MAX_LISTED = 500

RunTests = Callable[[], Awaitable[CommandResult]]


def _spec(name: str, description: str, props: dict[str, Any], required: list[str]) -> ToolSpec:
    schema = {"type": "object", "properties": props, "required": required, "additionalProperties": False}
    return ToolSpec(name=name, description=description, input_schema=schema)


_STR = {"type": "string"}
TOOL_SPECS = [
    _spec("list_files", "List files under a directory of the repository.", {"path": _STR}, []),
    _spec("read_file", "Read a text file of the repository.", {"path": _STR}, ["path"]),
    _spec("search", "Search file contents with a regular expression.", {"pattern": _STR, "path": _STR}, ["pattern"]),
    _spec("write_file", "Create or overwrite a file.", {"path": _STR, "content": _STR}, ["path", "content"]),
    _spec(
        "edit_file",
        "Replace one exact occurrence of old_text with new_text.",
        {"path": _STR, "old_text": _STR, "new_text": _STR},
        ["path", "old_text", "new_text"],
    ),
    _spec("run_tests", "Run the repository's test suite in the sandbox.", {}, []),
]


class ToolError(Exception):
    """A tool call the model got wrong; reported back to it as an error result."""


class Toolbox:
    def __init__(self, workspace: Workspace, run_tests: RunTests) -> None:
        self.ws = workspace
        self._run_tests = run_tests
        self.tests_run: list[CommandResult] = []

    @property
    def specs(self) -> list[ToolSpec]:
        return TOOL_SPECS

    async def call(self, call: ToolCall) -> ToolResult:
        if call.input_error:
            return ToolResult(tool_call_id=call.id, content=f"bad arguments: {call.input_error}", is_error=True)
        handler = getattr(self, f"_tool_{call.name}", None)
        if handler is None:
            return ToolResult(tool_call_id=call.id, content=f"unknown tool {call.name!r}", is_error=True)
        try:
            content: str = await handler(**call.input)
        except (ToolError, InvalidInputError, OSError, re.error, UnicodeDecodeError) as exc:
            return ToolResult(tool_call_id=call.id, content=str(exc), is_error=True)
        except TypeError as exc:  # wrong or missing arguments from the model
            return ToolResult(tool_call_id=call.id, content=f"bad arguments: {exc}", is_error=True)
        return ToolResult(tool_call_id=call.id, content=content)

    async def _tool_list_files(self, path: str = ".") -> str:
        base = self.ws.root if path in ("", ".") else self.ws.resolve(path)
        files = sorted(
            str(p.relative_to(self.ws.root))
            for p in base.rglob("*")
            if p.is_file() and ".git" not in p.relative_to(self.ws.root).parts
        )
        more = f"\n… {len(files) - MAX_LISTED} more" if len(files) > MAX_LISTED else ""
        return "\n".join(files[:MAX_LISTED]) + more

    async def _tool_read_file(self, path: str) -> str:
        target = self.ws.resolve(path)
        if not target.is_file():
            raise ToolError(f"{path} does not exist")
        text = target.read_text(encoding="utf-8")
        return text if len(text) <= MAX_READ else text[:MAX_READ] + "\n… truncated"

    async def _tool_search(self, pattern: str, path: str = ".") -> str:
        rx = re.compile(pattern)
        base = self.ws.root if path in ("", ".") else self.ws.resolve(path)
        hits: list[str] = []
        for f in sorted(base.rglob("*")):
            if not f.is_file() or ".git" in f.relative_to(self.ws.root).parts:
                continue
            try:
                lines = f.read_text(encoding="utf-8").splitlines()
            except UnicodeDecodeError:
                continue
            rel = f.relative_to(self.ws.root)
            hits += [f"{rel}:{n}: {line}" for n, line in enumerate(lines, 1) if rx.search(line)]
            if len(hits) >= 200:
                break
        return "\n".join(hits[:200]) or "no matches"

    async def _tool_write_file(self, path: str, content: str) -> str:
        target = self.ws.resolve(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
        return f"wrote {len(content)} characters to {path}"

    async def _tool_edit_file(self, path: str, old_text: str, new_text: str) -> str:
        target = self.ws.resolve(path)
        if not target.is_file():
            raise ToolError(f"{path} does not exist")
        text = target.read_text(encoding="utf-8")
        count = text.count(old_text) if old_text else 0
        if count != 1:
            raise ToolError(f"old_text occurs {count} times in {path}; it must occur exactly once")
        target.write_text(text.replace(old_text, new_text, 1), encoding="utf-8")
        return f"edited {path}"

    async def _tool_run_tests(self) -> str:
        result = await self._run_tests()
        self.tests_run.append(result)
        verdict = "PASSED" if result.exit_code == 0 else f"FAILED (exit {result.exit_code})"
        return f"{verdict}\n{result.output[-8000:]}"
