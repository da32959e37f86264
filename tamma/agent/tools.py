"""The agent's tools: list, read, search, write, edit by exact replacement, run tests.

Each tool's input is a pydantic model, and the JSON schema the model is shown is generated from
it, so what is advertised is exactly what is checked: a wrong-typed or missing argument is a
tool error the model can correct, never a crash of the step. Every path is resolved (symlinks
followed) inside the workspace or refused; file reads and regex searches run off the event loop,
bounded in size and time; every result is redacted before the model sees it.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import regex
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tamma.agent.sandbox import CommandResult
from tamma.agent.workspace import Workspace
from tamma.errors import InvalidInputError
from tamma.providers.base import ToolCall, ToolResult, ToolSpec
from tamma.redact import Redactor

MAX_READ = 100_000  # characters of one file shown to the model
MAX_FILE_BYTES = 5_000_000  # larger files are not read or searched
MAX_LISTED = 500
MAX_HITS = 200
SEARCH_TIMEOUT_S = 5.0  # a pathological pattern stops here instead of pinning a worker

RunTests = Callable[[], Awaitable[CommandResult]]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ListFiles(_Input):
    path: str = Field(default=".", description="a directory relative to the repository root")


class ReadFile(_Input):
    path: str = Field(description="a file relative to the repository root")


class Search(_Input):
    pattern: str = Field(description="a regular expression (Python syntax)", max_length=1000)
    path: str = Field(default=".", description="a directory or file to search under")


class WriteFile(_Input):
    path: str
    content: str


class EditFile(_Input):
    path: str
    old_text: str = Field(description="text that occurs exactly once in the file")
    new_text: str


class RunTestsInput(_Input):
    pass


_TOOLS: dict[str, tuple[type[_Input], str]] = {
    "list_files": (ListFiles, "List files under a directory of the repository."),
    "read_file": (ReadFile, "Read a text file of the repository."),
    "search": (Search, "Search file contents with a regular expression."),
    "write_file": (WriteFile, "Create or overwrite a file."),
    "edit_file": (EditFile, "Replace one exact occurrence of old_text with new_text."),
    "run_tests": (RunTestsInput, "Run the repository's test suite in the sandbox."),
}


def _schema(model: type[_Input]) -> dict[str, Any]:
    schema = model.model_json_schema()
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    schema.setdefault("properties", {})
    schema["additionalProperties"] = False
    return schema


TOOL_SPECS = [ToolSpec(name=n, description=d, input_schema=_schema(m)) for n, (m, d) in _TOOLS.items()]


class ToolError(Exception):
    """A tool call the model got wrong; reported back to it as an error result."""


class Toolbox:
    def __init__(self, workspace: Workspace, run_tests: RunTests, redactor: Redactor | None = None) -> None:
        self.ws = workspace
        self._run_tests = run_tests
        self.redact = redactor or Redactor()
        self.tests_run: list[CommandResult] = []
        self.written: set[str] = set()  # paths the agent wrote on purpose: new ones are committed

    @property
    def specs(self) -> list[ToolSpec]:
        return TOOL_SPECS

    async def call(self, call: ToolCall) -> ToolResult:
        content, is_error = await self._dispatch(call)
        return ToolResult(tool_call_id=call.id, content=self.redact(content), is_error=is_error)

    async def _dispatch(self, call: ToolCall) -> tuple[str, bool]:
        if call.input_error:
            return f"bad arguments: {call.input_error}", True
        entry = _TOOLS.get(call.name)
        if entry is None:
            return f"unknown tool {call.name!r}; the tools are {', '.join(_TOOLS)}", True
        try:
            args = entry[0].model_validate(call.input)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in exc.errors())
            return f"bad arguments for {call.name}: {problems}", True
        handler: Callable[[Any], Awaitable[str]] = getattr(self, f"_tool_{call.name}")
        try:
            return await handler(args), False
        except (ToolError, InvalidInputError, OSError, UnicodeDecodeError, ValueError) as exc:
            return str(exc), True

    # ---- fence ----------------------------------------------------------------------------

    def _inside(self, path: str) -> Path:
        """`path` resolved (symlinks followed) inside the workspace and outside .git."""
        if path in ("", "."):
            return self.ws.root.resolve()
        return self.ws.resolve(path)

    def _files(self, base: Path) -> Iterator[Path]:
        """Regular files under `base` whose real location is inside the workspace, .git excluded.
        Symlinks are listed as what they are but never followed out of the workspace."""
        root = self.ws.root.resolve()
        if base.is_file():
            yield base
            return
        for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if d != ".git")
            for name in sorted(filenames):
                p = Path(dirpath) / name
                real = p.resolve()
                if real.is_relative_to(root) and ".git" not in real.relative_to(root).parts and real.is_file():
                    yield p

    def _rel(self, p: Path) -> str:
        return str(p.relative_to(self.ws.root.resolve()))

    # ---- tools ----------------------------------------------------------------------------

    async def _tool_list_files(self, args: ListFiles) -> str:
        base = self._inside(args.path)

        def listing() -> str:
            files: list[str] = []
            for p in self._files(base):
                files.append(self._rel(p))
                if len(files) > MAX_LISTED:
                    return "\n".join(files[:MAX_LISTED]) + f"\n… more than {MAX_LISTED} files; list a subdirectory"
            return "\n".join(files)

        return await asyncio.to_thread(listing)

    async def _tool_read_file(self, args: ReadFile) -> str:
        target = self._inside(args.path)
        if not target.is_file():
            raise ToolError(f"{args.path} does not exist")
        if target.stat().st_size > MAX_FILE_BYTES:
            raise ToolError(f"{args.path} is larger than {MAX_FILE_BYTES} bytes; search it instead")
        text = await asyncio.to_thread(target.read_text, encoding="utf-8")
        return text if len(text) <= MAX_READ else text[:MAX_READ] + "\n… truncated"

    async def _tool_search(self, args: Search) -> str:
        try:
            rx = regex.compile(args.pattern)
        except regex.error as exc:
            raise ToolError(f"bad pattern: {exc}") from None
        base = self._inside(args.path)
        return await asyncio.to_thread(self._search, rx, base)

    def _search(self, rx: regex.Pattern[str], base: Path) -> str:
        hits: list[str] = []
        deadline = _Deadline(SEARCH_TIMEOUT_S)
        for f in self._files(base):
            try:
                if f.stat().st_size > MAX_FILE_BYTES:
                    continue
                lines = f.read_text(encoding="utf-8").splitlines()
            except (UnicodeDecodeError, OSError):
                continue
            rel = self._rel(f)
            for n, line in enumerate(lines, 1):
                try:
                    found = rx.search(line, timeout=deadline.left())
                except TimeoutError:
                    return "\n".join([*hits, f"… search stopped after {SEARCH_TIMEOUT_S:g}s; use a simpler pattern"])
                if found:
                    hits.append(f"{rel}:{n}: {line[:500]}")
                    if len(hits) >= MAX_HITS:
                        return "\n".join(hits) + f"\n… stopped at {MAX_HITS} matches"
        return "\n".join(hits) or "no matches"

    async def _tool_write_file(self, args: WriteFile) -> str:
        target = self._inside(args.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink():
            raise ToolError(f"{args.path} is a symbolic link; write to the file it names instead")
        await asyncio.to_thread(target.write_text, args.content, encoding="utf-8")
        self.written.add(str(target.relative_to(self.ws.root.resolve())))
        return f"wrote {len(args.content)} characters to {args.path}"

    async def _tool_edit_file(self, args: EditFile) -> str:
        target = self._inside(args.path)
        if not target.is_file():
            raise ToolError(f"{args.path} does not exist")
        text = await asyncio.to_thread(target.read_text, encoding="utf-8")
        count = text.count(args.old_text) if args.old_text else 0
        if count != 1:
            raise ToolError(f"old_text occurs {count} times in {args.path}; it must occur exactly once")
        await asyncio.to_thread(target.write_text, text.replace(args.old_text, args.new_text, 1), encoding="utf-8")
        return f"edited {args.path}"

    async def _tool_run_tests(self, args: RunTestsInput) -> str:
        result = await self._run_tests()
        self.tests_run.append(result)
        verdict = "PASSED" if result.exit_code == 0 else f"FAILED (exit {result.exit_code})"
        return f"{verdict}\n{result.output[-8000:]}"


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self._end = time.monotonic() + seconds

    def left(self) -> float:
        left = self._end - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return left
