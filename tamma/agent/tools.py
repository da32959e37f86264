"""The agent's tools: find and list files, read a window of a file with line numbers, search
(ripgrep, .gitignore respected, context lines), write, edit by exact replacement (with the
closest lines when it does not match, and a syntax check), run a command or the tests in the
sandbox.

Each tool's input is a pydantic model, and the JSON schema the model is shown is generated from
it, so what is advertised is exactly what is checked: a wrong-typed or missing argument is a
tool error the model can correct, never a crash of the step. Every path is resolved (symlinks
followed) inside the workspace or refused; file reads and regex searches run off the event loop,
bounded in size and time; every result is redacted before the model sees it.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import difflib
import fnmatch
import json
import os
import shutil
import sysconfig
import time
import tomllib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import regex
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tamma.agent.sandbox import CommandResult
from tamma.agent.workspace import Workspace
from tamma.errors import TOO_DEEP, InvalidInputError
from tamma.providers.base import ToolCall, ToolResult, ToolSpec
from tamma.redact import Redactor

MAX_READ = 100_000  # characters of one file shown to the model at once
READ_WINDOW = 400  # lines read_file shows when no end_line is given
MAX_FILE_BYTES = 5_000_000  # larger files are not read or searched
MAX_LISTED = 500
MAX_HITS = 200
SEARCH_TIMEOUT_S = 5.0  # a pathological pattern stops here instead of pinning a worker
RUN_HEAD, RUN_TAIL = 2_000, 8_000  # characters of a command's output shown: its start and its end

RunTests = Callable[[], Awaitable[CommandResult]]
#: runs a shell command line in the same sandbox and environment as the tests
RunCommand = Callable[[str, float], Awaitable[CommandResult]]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ListFiles(_Input):
    path: str = Field(default=".", description="a directory relative to the repository root")


class ReadFile(_Input):
    path: str = Field(description="a file relative to the repository root")
    start_line: int = Field(default=1, ge=1, description="first line to show (1-based)")
    end_line: int | None = Field(
        default=None, ge=1, description=f"last line to show (default: {READ_WINDOW} lines from start_line)"
    )


class FindFiles(_Input):
    glob: str = Field(description="a glob such as '**/*.py' or 'src/**/test_*.js'", max_length=500)
    path: str = Field(default=".", description="a directory to search under")


class Search(_Input):
    pattern: str = Field(description="a regular expression (Rust/Python syntax: \\b, \\w, (?i) work)", max_length=1000)
    path: str = Field(default=".", description="a directory or file to search under")
    glob: str | None = Field(default=None, description="only files matching this glob, e.g. '*.py'", max_length=500)
    context: int = Field(default=0, ge=0, le=5, description="lines of context around each match")


class Run(_Input):
    command: str = Field(
        description="a shell command line, run in the repository's root inside the test sandbox (no network): "
        "one test, a reproduction script, a linter",
        max_length=4000,
    )
    timeout_s: float = Field(default=120, gt=0, le=600, description="stop it after this many seconds")


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
    "list_files": (ListFiles, "List files under a directory of the repository (.gitignore respected)."),
    "find_files": (FindFiles, "Find files whose path matches a glob (.gitignore respected)."),
    "read_file": (ReadFile, f"Read a text file with line numbers, {READ_WINDOW} lines at a time unless told."),
    "search": (Search, "Search file contents with a regular expression; path:line: text, with counts."),
    "write_file": (WriteFile, "Create or overwrite a file."),
    "edit_file": (
        EditFile,
        "Replace one exact occurrence of old_text with new_text; shows the edited region. Refused when "
        "old_text is missing or repeated, or when the edit breaks the file's syntax (Python, JSON, TOML).",
    ),
    "run": (Run, "Run a shell command in the sandbox (one test, a script); returns its exit code and output."),
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
    def __init__(
        self,
        workspace: Workspace,
        run_tests: RunTests,
        redactor: Redactor | None = None,
        run_command: RunCommand | None = None,
    ) -> None:
        self.ws = workspace
        self._run_tests = run_tests
        self._run_command = run_command
        self.redact = redactor or Redactor()
        self.tests_run: list[CommandResult] = []
        self.written: set[str] = set()  # paths the agent wrote on purpose: new ones are committed

    @property
    def specs(self) -> list[ToolSpec]:
        return TOOL_SPECS if self._run_command is not None else [t for t in TOOL_SPECS if t.name != "run"]

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

    async def _listed(self, base: Path, glob: str | None = None) -> list[str] | None:
        """Files under `base` as ripgrep sees them (.gitignore, .ignore respected; hidden files
        shown, .git not; links not followed), or None without ripgrep."""
        rg = ripgrep()
        if rg is None:
            return None
        argv = [rg, "--files", "--hidden", "--glob", "!.git", "--no-config", "--sort", "path"]
        if glob:
            argv += ["--glob", glob]
        out, _ = await _capture([*argv, "--", str(base)], self.ws.root, SEARCH_TIMEOUT_S)
        root = str(self.ws.root.resolve())
        files = []
        for line in out.splitlines():
            path = Path(line) if os.path.isabs(line) else self.ws.root / line
            real = os.path.realpath(path)
            if real == root or real.startswith(root + os.sep):
                files.append(str(path.resolve().relative_to(self.ws.root.resolve())))
        return files

    async def _tool_list_files(self, args: ListFiles) -> str:
        base = self._inside(args.path)
        files = await self._listed(base)
        if files is None:
            files = await asyncio.to_thread(lambda: [self._rel(p) for p in self._files(base)])
        return _capped(files, "list a subdirectory or use find_files")

    async def _tool_find_files(self, args: FindFiles) -> str:
        base = self._inside(args.path)
        glob = args.glob
        files = await self._listed(base, glob)
        if files is None:
            files = await asyncio.to_thread(
                lambda: [self._rel(p) for p in self._files(base) if _glob_match(self._rel(p), glob)]
            )
        return _capped(files, "narrow the glob") if files else f"no file matches {glob!r}"

    async def _tool_read_file(self, args: ReadFile) -> str:
        target = self._inside(args.path)
        if not target.is_file():
            raise ToolError(f"{args.path} does not exist")
        if target.stat().st_size > MAX_FILE_BYTES:
            raise ToolError(f"{args.path} is larger than {MAX_FILE_BYTES} bytes; search it instead")
        loaded = await asyncio.to_thread(_Text.load, target)
        lines = loaded.shown().splitlines()
        total = len(lines)
        if total == 0:
            return f"{args.path} is empty"
        start = args.start_line
        if start > total:
            raise ToolError(f"{args.path} has {total} lines; start_line {start} is past its end")
        end = min(args.end_line or start + READ_WINDOW - 1, total)
        if end < start:
            raise ToolError(f"end_line {end} is before start_line {start}")
        shown, size = [], 0
        for n in range(start, end + 1):
            line = f"{n:>6}\t{lines[n - 1]}"
            if size + len(line) > MAX_READ:
                end = n - 1
                break
            shown.append(line)
            size += len(line) + 1
        note = f"[{args.path}: lines {start}-{end} of {total}"
        note += f"; {total - end} more: read_file start_line={end + 1}]" if end < total else "]"
        if not loaded.utf8:
            note += " [not UTF-8: bytes it cannot show are \ufffd; edits elsewhere keep them as they are]"
        return "\n".join([*shown, note])

    async def _tool_search(self, args: Search) -> str:
        base = self._inside(args.path)
        rg = ripgrep()
        if rg is not None:
            return await self._ripgrep(rg, args, base)
        try:
            rx = regex.compile(args.pattern)
        except regex.error as exc:
            raise ToolError(f"bad pattern: {exc}") from None
        return await asyncio.to_thread(self._search, rx, base)

    async def _ripgrep(self, rg: str, args: Search, base: Path) -> str:
        argv = [
            rg, "--no-config", "--line-number", "--no-heading", "--with-filename", "--color", "never",
            "--hidden", "--glob", "!.git", "--max-filesize", str(MAX_FILE_BYTES), "--max-columns", "500",
            "--max-columns-preview", "--sort", "path", "--regexp", args.pattern,
        ]  # fmt: skip
        if args.context:
            argv += ["--context", str(args.context)]
        if args.glob:
            argv += ["--glob", args.glob]
        out, code = await _capture([*argv, "--", str(base)], self.ws.root, SEARCH_TIMEOUT_S)
        if code == 2 and not out:
            raise ToolError("bad pattern or path (ripgrep refused it); patterns use Rust regex syntax")
        root = str(self.ws.root.resolve()) + os.sep
        lines = [ln.replace(root, "", 1) if ln.startswith(root) else ln for ln in out.splitlines()]
        matches = [ln for ln in lines if regex.match(r"^[^\n]*?:\d+:", ln)]
        if not matches:
            return "no matches"
        files = len({m.split(":", 1)[0] for m in matches})
        if len(matches) > MAX_HITS:
            last = lines.index(matches[MAX_HITS - 1])
            return "\n".join(
                [*lines[: last + 1], f"… {len(matches)}+ matches in {files}+ files; showing {MAX_HITS}: narrow it"]
            )
        return "\n".join([*lines, f"[{len(matches)} matches in {files} files]"])

    def _search(self, rx: regex.Pattern[str], base: Path) -> str:
        hits: list[str] = []
        deadline = _Deadline(SEARCH_TIMEOUT_S)
        for f in self._files(base):
            try:
                if f.stat().st_size > MAX_FILE_BYTES:
                    continue
                raw = f.read_bytes()
            except OSError:
                continue
            if b"\0" in raw[:8192]:
                continue  # binary, as ripgrep judges it
            lines = raw.decode("utf-8", errors="replace").splitlines()  # a Latin-1 source is searched too
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
        # a file that exists keeps its line endings (a CRLF file stays CRLF: a rewrite must not
        # touch every line of the diff); a new one is written as given
        content = _Text(args.content)
        existing = target.is_file() and target.stat().st_size <= MAX_FILE_BYTES
        if existing and (await asyncio.to_thread(_Text.load, target)).crlf:
            content = _Text(args.content.replace("\r\n", "\n"), crlf=True)
        await asyncio.to_thread(content.save, target)
        self.written.add(str(target.relative_to(self.ws.root.resolve())))
        return f"wrote {len(args.content)} characters to {args.path}"

    async def _tool_edit_file(self, args: EditFile) -> str:
        target = self._inside(args.path)
        if not target.is_file():
            raise ToolError(f"{args.path} does not exist")
        if target.stat().st_size > MAX_FILE_BYTES:
            raise ToolError(f"{args.path} is larger than {MAX_FILE_BYTES} bytes; it cannot be edited here")
        loaded = await asyncio.to_thread(_Text.load, target)
        text = loaded.text
        # the model sees "\n" line ends whatever the file has (read_file); its text is matched so
        old_text, new_text = args.old_text.replace("\r\n", "\n"), args.new_text.replace("\r\n", "\n")
        if not old_text:
            raise ToolError("old_text is empty; give the exact text to replace (write_file creates a file)")
        count = text.count(old_text)
        if count == 0:
            raise ToolError(f"old_text does not occur in {args.path}. {_closest(loaded.shown(), old_text)}")
        if count > 1:
            lines = _line_numbers(text, old_text)
            raise ToolError(
                f"old_text occurs {count} times in {args.path} (at lines {', '.join(map(str, lines[:20]))}); "
                "include more surrounding lines so it occurs exactly once"
            )
        new = text.replace(old_text, new_text, 1)
        broken = _syntax_error(args.path, new)
        if broken and not _syntax_error(args.path, text):
            raise ToolError(f"the edit was not made: it would break {args.path} ({broken}); fix the new_text")
        await asyncio.to_thread(_Text(new, loaded.crlf).save, target)
        start = text[: text.index(old_text)].count("\n") + 1
        shown = _Text(new, loaded.crlf).shown()
        return f"edited {args.path}:\n{_window(shown, start, start + new_text.count(chr(10)))}"

    async def _tool_run(self, args: Run) -> str:
        if self._run_command is None:
            raise ToolError("run is not available here")
        result = await self._run_command(args.command, args.timeout_s)
        out = result.output
        if len(out) > RUN_HEAD + RUN_TAIL:
            cut = len(out) - RUN_HEAD - RUN_TAIL
            out = f"{out[:RUN_HEAD]}\n… {cut} characters cut …\n{out[-RUN_TAIL:]}"
        status = "timed out" if result.timed_out else f"exit {result.exit_code}"
        return f"[{status} after {result.duration_s:.1f}s]\n{out}"

    async def _tool_run_tests(self, args: RunTestsInput) -> str:
        result = await self._run_tests()
        self.tests_run.append(result)
        verdict = "PASSED" if result.exit_code == 0 else f"FAILED (exit {result.exit_code})"
        return f"{verdict}\n{result.output[-8000:]}"


def ripgrep() -> str | None:
    """The `rg` of the ripgrep wheel beside this interpreter, else one on PATH."""
    beside = Path(sysconfig.get_path("scripts")) / "rg"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("rg")


async def _capture(argv: list[str], cwd: Path, timeout_s: float, limit: int = 2_000_000) -> tuple[str, int]:
    """A host-side helper's output (ripgrep: reads files, runs nothing the repository names),
    bounded in time and size."""
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL, env={"PATH": os.defpath, "LC_ALL": "C.UTF-8"},
    )  # fmt: skip
    assert proc.stdout is not None
    stream = proc.stdout
    chunks: list[bytes] = []

    async def read() -> None:
        size = 0
        while size < limit and (chunk := await stream.read(65536)):
            chunks.append(chunk)
            size += len(chunk)

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(read(), timeout_s)
    data = b"".join(chunks)[:limit]
    try:  # at EOF it is exiting; past the limit or the deadline it is stopped
        code = await asyncio.wait_for(proc.wait(), 1.0 if len(data) < limit else 0.01)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        code = await proc.wait()
    return data.decode(errors="replace"), code


def _glob_match(path: str, glob: str) -> bool:
    """A gitignore-style glob as ripgrep reads it: `**/` also matches no folder at all."""
    return fnmatch.fnmatch(path, glob) or (glob.startswith("**/") and fnmatch.fnmatch(path, glob[3:]))


def _capped(files: list[str], hint: str) -> str:
    if len(files) > MAX_LISTED:
        return "\n".join(files[:MAX_LISTED]) + f"\n… {len(files)} files, {MAX_LISTED} shown; {hint}"
    return "\n".join(files)


def _line_numbers(text: str, needle: str) -> list[int]:
    out, at = [], text.find(needle)
    while at != -1:
        out.append(text.count("\n", 0, at) + 1)
        at = text.find(needle, at + 1)
    return out


def _closest(text: str, old: str) -> str:
    """Where old_text nearly is: the lines most like its first non-blank line, numbered."""
    lines = text.splitlines()
    first = next((ln.strip() for ln in old.splitlines() if ln.strip()), "")
    scored = sorted(
        ((difflib.SequenceMatcher(None, first, ln.strip()).ratio(), n) for n, ln in enumerate(lines, 1)),
        reverse=True,
    )
    near = [n for ratio, n in scored[:3] if ratio > 0.5]
    if not near:
        return "Nothing like its first line is there; read the file first."
    shown = "\n".join(_window(text, n, n, around=1) for n in sorted(near))
    return f"The closest lines (whitespace and every character must match exactly):\n{shown}"


def _window(text: str, first: int, last: int, around: int = 3) -> str:
    lines = text.splitlines()
    lo, hi = max(1, first - around), min(len(lines), last + around)
    return "\n".join(f"{n:>6}\t{lines[n - 1]}" for n in range(lo, hi + 1))


@dataclass(frozen=True)
class _Text:
    """A file as the model reads and edits it, written back as the repository had it. Python's
    text mode would turn a CRLF file's endings into "\n" on the first edit (a diff of every line)
    and refuse a file that is not UTF-8 (a Latin-1 source, say) outright. Here the endings are
    "\n" for the model and restored on save, and bytes that are not UTF-8 travel through as
    surrogates (surrogateescape), unchanged, wherever the model did not edit."""

    text: str  # "\n" line ends; undecodable bytes as lone surrogates
    crlf: bool = False

    @property
    def utf8(self) -> bool:
        try:
            self.text.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True

    @classmethod
    def load(cls, path: Path) -> _Text:
        raw = path.read_bytes()
        crlf = raw.count(b"\r\n") * 2 > raw.count(b"\n")  # most lines end CRLF
        text = raw.decode("utf-8", errors="surrogateescape")
        return cls(text.replace("\r\n", "\n") if crlf else text, crlf)

    def shown(self) -> str:
        """What the model may see: no lone surrogates (an API would refuse them)."""
        return self.text.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")

    def save(self, path: Path) -> None:
        text = self.text.replace("\n", "\r\n") if self.crlf else self.text
        path.write_bytes(text.encode("utf-8", errors="surrogateescape"))


def _syntax_error(path: str, text: str) -> str | None:
    """A parse error in `text` for the file types Tamma can check without running anything."""
    suffix = Path(path).suffix.lower()
    try:
        if suffix == ".py":
            ast.parse(text, filename=path)
        elif suffix == ".json":
            json.loads(text)
        elif suffix == ".toml":
            tomllib.loads(text)
        else:
            return None
    except SyntaxError as exc:
        return f"line {exc.lineno}: {exc.msg}"
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        return str(exc).splitlines()[0][:200]
    except TOO_DEEP:
        return "nested too deeply to parse"
    return None


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self._end = time.monotonic() + seconds

    def left(self) -> float:
        left = self._end - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return left
