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
