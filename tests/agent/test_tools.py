"""Agent tools against a real clone."""

from __future__ import annotations

from pathlib import Path

import pytest

from tamma.agent.sandbox import CommandResult
from tamma.agent.tools import Toolbox
from tamma.agent.workspace import Workspace
from tamma.demo import make_sample_repo
from tamma.errors import InvalidInputError
from tamma.providers.base import ToolCall


@pytest.fixture
async def toolbox(tmp_path: Path) -> Toolbox:
    repo = make_sample_repo(tmp_path / "repo")
    ws = await Workspace.clone(str(repo), "main", tmp_path / "work")

    async def run_tests() -> CommandResult:
        return CommandResult(exit_code=0, output="2 passed")

    return Toolbox(ws, run_tests)


async def call(tb: Toolbox, name: str, **args: object) -> tuple[str, bool]:
    result = await tb.call(ToolCall(id="t", name=name, input=args))
    return result.content, result.is_error


async def test_read_search_list(toolbox: Toolbox) -> None:
    assert "def paginate" in (await call(toolbox, "read_file", path="pager.py"))[0]
    assert "pager.py:3:" in (await call(toolbox, "search", pattern=r"start = "))[0]
    listing, _ = await call(toolbox, "list_files")
    assert "test_pager.py" in listing and ".git" not in listing


async def test_edit_requires_exactly_one_match(toolbox: Toolbox) -> None:
    out, err = await call(toolbox, "edit_file", path="pager.py", old_text="per_page", new_text="size")
    assert err and "occurs 4 times" in out
    out, err = await call(toolbox, "edit_file", path="pager.py", old_text="start = page", new_text="start = (page - 1)")
    assert not err
    assert "(page - 1)" in (toolbox.ws.root / "pager.py").read_text()


@pytest.mark.parametrize("path", ["../outside.txt", "/etc/passwd", ".git/config", "sub/../../x"])
async def test_paths_cannot_escape_or_touch_git(toolbox: Toolbox, path: str) -> None:
    out, err = await call(toolbox, "write_file", path=path, content="x")
    assert err and ("leaves the repository" in out or "relative" in out or ".git" in out)


async def test_unknown_tool_and_bad_arguments_are_errors_for_the_model(toolbox: Toolbox) -> None:
    assert (await call(toolbox, "rm_rf"))[1]
    out, err = await call(toolbox, "read_file", nonsense=1)
    assert err and "bad arguments" in out


async def test_workspace_resolve_rejects_symlink_escape(tmp_path: Path) -> None:
    repo = make_sample_repo(tmp_path / "repo")
    ws = await Workspace.clone(str(repo), "main", tmp_path / "work")
    (ws.root / "link").symlink_to(tmp_path)
    with pytest.raises(InvalidInputError, match="leaves the repository"):
        ws.resolve("link/secret")


SECRET = "ghp_planted_secret_token_123456"


@pytest.fixture
def secret_outside(tmp_path: Path) -> Path:
    secret = tmp_path / "outside" / "environ"
    secret.parent.mkdir()
    secret.write_text(f"GITHUB_TOKEN={SECRET}\n")
    return secret


async def test_symlinks_out_of_the_workspace_are_never_followed(toolbox: Toolbox, secret_outside: Path) -> None:
    root = toolbox.ws.root
    (root / "leak").symlink_to(secret_outside)
    (root / "leakdir").symlink_to(secret_outside.parent, target_is_directory=True)
    (root / "proc_environ").symlink_to("/proc/self/environ")
    for name, args in [
        ("search", {"pattern": "GITHUB_TOKEN"}),
        ("search", {"pattern": "GITHUB", "path": "leakdir"}),
        ("list_files", {}),
        ("list_files", {"path": "leakdir"}),
        ("read_file", {"path": "leak"}),
        ("read_file", {"path": "proc_environ"}),
        ("read_file", {"path": "leakdir/environ"}),
    ]:
        out, _ = await call(toolbox, name, **args)
        assert SECRET not in out and "GITHUB_TOKEN" not in out, (name, args, out)
    listing, _ = await call(toolbox, "list_files")
    assert "pager.py" in listing and "leak" not in listing.split()


async def test_symlink_into_git_cannot_be_written_through(toolbox: Toolbox) -> None:
    (toolbox.ws.root / "hook").symlink_to(toolbox.ws.root / ".git" / "hooks" / "pre-commit")
    out, err = await call(toolbox, "write_file", path="hook", content="#!/bin/sh\ncurl evil\n")
    assert err and ".git" in out
    assert not (toolbox.ws.root / ".git" / "hooks" / "pre-commit").exists()


@pytest.mark.parametrize(
    ("name", "args", "expected"),
    [
        ("read_file", {"path": ["pager.py"]}, "path: Input should be a valid string"),
        ("read_file", {}, "path: Field required"),
        ("write_file", {"path": "a.py", "content": 3}, "content: Input should be a valid string"),
        ("search", {"pattern": "x", "path": {"a": 1}}, "path: Input should be a valid string"),
        ("edit_file", {"path": "pager.py", "old_text": None, "new_text": ""}, "old_text"),
        ("read_file", {"path": "pager.py\x00x"}, "null"),
        ("search", {"pattern": "(unclosed"}, "bad pattern"),
    ],
)
async def test_wrong_arguments_are_tool_errors_not_crashes(
    toolbox: Toolbox, name: str, args: dict[str, object], expected: str
) -> None:
    out, err = await call(toolbox, name, **args)
    assert err and expected in out, out


def test_advertised_schemas_forbid_unknown_keys_and_name_required_ones() -> None:
    from tamma.agent.tools import TOOL_SPECS

    specs = {s.name: s.input_schema for s in TOOL_SPECS}
    assert specs["edit_file"]["required"] == ["path", "old_text", "new_text"]
    assert all(schema["additionalProperties"] is False for schema in specs.values())
    assert specs["read_file"]["properties"]["path"]["type"] == "string"


@pytest.mark.parametrize("engine", ["ripgrep", "python"])
async def test_catastrophic_regex_stops_instead_of_pinning_the_worker(
    toolbox: Toolbox, monkeypatch: pytest.MonkeyPatch, engine: str
) -> None:
    import time

    from tamma.agent import tools

    if engine == "python":
        monkeypatch.setattr(tools, "ripgrep", lambda: None)
    elif tools.ripgrep() is None:
        pytest.skip("ripgrep is not installed")
    (toolbox.ws.root / "big.txt").write_text(("a" * 40 + "!\n") * 50)
    monkeypatch.setattr(tools, "SEARCH_TIMEOUT_S", 0.5)
    started = time.monotonic()
    out, err = await call(toolbox, "search", pattern=r"(a|aa)+$")  # exponential backtracking for a backtracker
    assert not err and time.monotonic() - started < 3
    # ripgrep's engine is linear (no backtracking: it answers); the fallback stops at its deadline
    assert ("search stopped" in out) if engine == "python" else ("no matches" in out)


async def test_tool_results_are_redacted(tmp_path: Path) -> None:
    from tamma.redact import REDACTED, Redactor

    repo = make_sample_repo(tmp_path / "repo")
    ws = await Workspace.clone(str(repo), "main", tmp_path / "work")
    (ws.root / "settings.py").write_text(f"TOKEN = '{SECRET}'\n")

    async def run_tests() -> CommandResult:
        return CommandResult(exit_code=1, output=f"AssertionError: {SECRET} != x")

    tb = Toolbox(ws, run_tests, Redactor([SECRET]))
    for name, args in [("read_file", {"path": "settings.py"}), ("search", {"pattern": "TOKEN"}), ("run_tests", {})]:
        out, _ = await call(tb, name, **args)
        assert SECRET not in out and REDACTED in out, name


async def test_huge_files_are_neither_read_nor_searched(toolbox: Toolbox) -> None:
    from tamma.agent.tools import MAX_FILE_BYTES

    (toolbox.ws.root / "huge.txt").write_text("needle\n" + "x" * MAX_FILE_BYTES)
    out, err = await call(toolbox, "read_file", path="huge.txt")
    assert err and "larger than" in out
    out, err = await call(toolbox, "search", pattern="needle")
    assert not err and "huge.txt" not in out


def test_stale_workspaces_are_swept_and_fresh_ones_kept(tmp_path: Path) -> None:
    import os
    import time

    from tamma.agent.workspace import sweep_workspaces

    work = tmp_path / "work"
    stale, fresh, other = work / "ws-dead", work / "ws-live", work / "not-a-workspace"
    for d in (stale, fresh, other):
        (d / "sub").mkdir(parents=True)
    old = time.time() - 7200
    for d in (stale, other):
        os.utime(d, (old, old))
    assert sweep_workspaces(work, older_than_s=3600) == 1
    assert not stale.exists() and fresh.exists() and other.exists()


# ---- the agent-computer interface: windows, globs, .gitignore, edits that explain, run ---------


@pytest.fixture(params=["ripgrep", "python"])
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    from tamma.agent import tools

    if request.param == "python":
        monkeypatch.setattr(tools, "ripgrep", lambda: None)
    elif tools.ripgrep() is None:
        pytest.skip("ripgrep is not installed")
    return str(request.param)


async def test_read_file_shows_numbered_windows_and_says_what_is_left(toolbox: Toolbox) -> None:
    (toolbox.ws.root / "long.py").write_text("".join(f"x{i} = {i}\n" for i in range(1, 1001)))
    out, err = await call(toolbox, "read_file", path="long.py")
    assert not err and out.splitlines()[0] == "     1\tx1 = 1" and "   400\tx400 = 400" in out
    assert "x401" not in out and "lines 1-400 of 1000; 600 more: read_file start_line=401" in out
    out, _ = await call(toolbox, "read_file", path="long.py", start_line=995, end_line=2000)
    assert out.splitlines()[0] == "   995\tx995 = 995" and out.endswith("lines 995-1000 of 1000]")
    out, err = await call(toolbox, "read_file", path="long.py", start_line=1001)
    assert err and "has 1000 lines" in out


async def test_listing_finding_and_searching_respect_gitignore(toolbox: Toolbox, engine: str) -> None:
    root = toolbox.ws.root
    (root / ".gitignore").write_text("build/\n")
    (root / "build").mkdir()
    (root / "build" / "gen.py").write_text("def paginate(): pass\n")
    (root / "pkg").mkdir()
    (root / "pkg" / "util.py").write_text("def helper():\n    return paginate_all()\n")
    listing, _ = await call(toolbox, "list_files")
    found, _ = await call(toolbox, "find_files", glob="**/*.py")
    hits, _ = await call(toolbox, "search", pattern="paginate")
    if engine == "ripgrep":  # the fallback walks every file: .gitignore is ripgrep's
        assert "build/gen.py" not in listing and "build/gen.py" not in found and "build/gen.py" not in hits
    assert "pkg/util.py" in found and "pager.py" in found and "README" not in found
    assert "pkg/util.py:2:" in hits and "pager.py:" in hits


async def test_search_gives_context_globs_and_counts(toolbox: Toolbox, engine: str) -> None:
    if engine == "python":
        pytest.skip("context, globs and counts are ripgrep's")
    out, err = await call(toolbox, "search", pattern=r"start\s*=", context=1, glob="*.py")
    assert not err and "pager.py:3:" in out and "pager.py-2-" in out  # a line of context before
    assert out.splitlines()[-1].startswith("[") and "matches in 1 files]" in out
    (toolbox.ws.root / "many.txt").write_text("hit\n" * 500)
    out, _ = await call(toolbox, "search", pattern="hit", glob="many.txt")
    assert "500+ matches" in out or "showing 200" in out
    out, err = await call(toolbox, "search", pattern="(unclosed")
    assert err and "bad pattern" in out


async def test_edit_failures_say_why_and_success_shows_the_region(toolbox: Toolbox) -> None:
    out, err = await call(toolbox, "edit_file", path="pager.py", old_text="    start = page*per_page\n", new_text="x")
    assert err and "does not occur" in out and "start = page * per_page" in out and "\t" in out  # the closest line, numbered
    out, err = await call(toolbox, "edit_file", path="pager.py", old_text="per_page", new_text="size")
    assert err and "at lines" in out and "include more surrounding lines" in out
    out, err = await call(
        toolbox, "edit_file", path="pager.py", old_text="    start = page * per_page\n", new_text="    start = (page - 1) * per_page\n"
    )
    assert not err and "start = (page - 1) * per_page" in out and "def paginate" in out  # the region around it


@pytest.mark.parametrize(
    ("path", "text", "old", "new"),
    [
        ("mod.py", "def f():\n    return 1\n", "return 1", "return (1"),
        ("data.json", '{"a": 1}\n', '"a": 1', '"a": 1,'),
        ("conf.toml", "[x]\na = 1\n", "a = 1", "a = "),
    ],
)
async def test_an_edit_that_breaks_the_syntax_is_refused(toolbox: Toolbox, path: str, text: str, old: str, new: str) -> None:
    (toolbox.ws.root / path).write_text(text)
    out, err = await call(toolbox, "edit_file", path=path, old_text=old, new_text=new)
    assert err and "would break" in out and (toolbox.ws.root / path).read_text() == text
    # a file already broken may still be edited (the fix may take several steps)
    (toolbox.ws.root / path).write_text(text.replace(old, new))
    out, err = await call(toolbox, "edit_file", path=path, old_text=new, new_text=old)
    assert not err


async def test_run_executes_in_the_sandbox_with_exit_code_and_capped_output(tmp_path: Path) -> None:
    from tamma.agent.sandbox import SandboxPolicy, probe_bwrap, run_sandboxed

    if not probe_bwrap()[0]:
        pytest.skip("bwrap unavailable")
    repo = make_sample_repo(tmp_path / "repo")
    ws = await Workspace.clone(str(repo), "main", tmp_path / "work")

    async def run_tests() -> CommandResult:
        return CommandResult(exit_code=0, output="")

    async def run(command: str, timeout_s: float) -> CommandResult:
        return await run_sandboxed(command, ws.root, SandboxPolicy(timeout_s=timeout_s))

    tb = Toolbox(ws, run_tests, run_command=run)
    assert "run" in {t.name for t in tb.specs} and "run" not in {t.name for t in Toolbox(ws, run_tests).specs}
    out, err = await call(tb, "run", command="python3 -c 'import pager; print(pager.paginate(list(range(5)), 1, 2))'; exit 3")
    assert not err and out.startswith("[exit 3 after") and "[2, 3]" in out  # the bug, reproduced
    out, _ = await call(tb, "run", command="ls /root; echo $HOME; seq 1 20000")
    assert "characters cut" in out and "\n20000" in out and "\n1\n" in out  # head and tail kept
    out, _ = await call(tb, "run", command="sleep 30", timeout_s=1)
    assert out.startswith("[timed out")


async def test_a_crlf_file_keeps_its_line_endings_and_a_latin1_file_its_bytes(toolbox: Toolbox) -> None:
    """Repositories from Windows keep CRLF files, old ones Latin-1 sources. An edit changes the
    lines it names and nothing else: not every line's ending, not the bytes it cannot decode."""
    root = toolbox.ws.root
    crlf = b"def a():\r\n    return 1\r\n\r\ndef b():\r\n    return 2\r\n"
    (root / "win.py").write_bytes(crlf)
    shown, err = await call(toolbox, "read_file", path="win.py")
    assert not err and "\r" not in shown and "return 2" in shown
    out, err = await call(toolbox, "edit_file", path="win.py", old_text="def b():\n    return 2", new_text="def b():\n    return 3")
    assert not err, out
    assert (root / "win.py").read_bytes() == crlf.replace(b"return 2", b"return 3")
    out, err = await call(toolbox, "edit_file", path="win.py", old_text="return 1\r\n", new_text="return 10\r\n")
    assert not err, out  # the model's own CRLF is matched too, and not doubled
    assert (root / "win.py").read_bytes() == crlf.replace(b"return 2", b"return 3").replace(b"return 1", b"return 10")
    await call(toolbox, "write_file", path="win.py", content="x = 1\ny = 2\n")
    assert (root / "win.py").read_bytes() == b"x = 1\r\ny = 2\r\n"  # a rewrite keeps the file's endings
    await call(toolbox, "write_file", path="new.txt", content="a\nb\n")
    assert (root / "new.txt").read_bytes() == b"a\nb\n"  # a new file as given

    latin = "# café\nNAME = 'José'\nVALUE = 1\n".encode("latin-1")
    (root / "legacy.py").write_bytes(latin)
    shown, err = await call(toolbox, "read_file", path="legacy.py")
    assert not err and "not UTF-8" in shown and "Jos\ufffd" in shown, shown
    out, err = await call(toolbox, "edit_file", path="legacy.py", old_text="VALUE = 1", new_text="VALUE = 2")
    assert not err, out
    assert (root / "legacy.py").read_bytes() == latin.replace(b"VALUE = 1", b"VALUE = 2")  # é left as 0xe9


async def test_a_latin1_source_is_searched_and_a_binary_is_not(toolbox: Toolbox, engine: str) -> None:
    (toolbox.ws.root / "legacy.py").write_bytes("# café\nTOTAL_PRICE = 1\n".encode("latin-1"))
    (toolbox.ws.root / "blob.bin").write_bytes(b"\x00\x01TOTAL_PRICE\x00")
    out, err = await call(toolbox, "search", pattern="TOTAL_PRICE")
    assert not err and "legacy.py:2" in out and "blob.bin" not in out, out


async def test_an_edit_to_something_nested_too_deeply_to_check_is_refused_not_a_crash(toolbox: Toolbox) -> None:
    (toolbox.ws.root / "data.json").write_text('{"a": 1}\n')
    deep = "[" * 100_000 + "]" * 100_000
    out, err = await call(toolbox, "edit_file", path="data.json", old_text='{"a": 1}', new_text=deep)
    assert err and "nested too deeply to parse" in out, out[:300]
    assert (toolbox.ws.root / "data.json").read_text() == '{"a": 1}\n'
