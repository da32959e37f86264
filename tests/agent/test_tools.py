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


async def test_catastrophic_regex_stops_instead_of_pinning_the_worker(
    toolbox: Toolbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tamma.agent import tools

    (toolbox.ws.root / "big.txt").write_text(("a" * 40 + "!\n") * 50)
    monkeypatch.setattr(tools, "SEARCH_TIMEOUT_S", 0.5)
    out, err = await call(toolbox, "search", pattern=r"(a|aa)+$")  # exponential backtracking
    assert not err and "search stopped" in out


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
