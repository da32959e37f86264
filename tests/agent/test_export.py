"""The pristine export of a base commit (the source every environment is built from): a real
repository with the links real ones commit, and the ones an attacker would. Run twice: with the
stdlib's extraction filter, and with the by-hand checks used where Python has none (< 3.11.4)."""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from tamma.agent.workspace import Workspace


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(params=["stdlib-filter", "by-hand"])
def extraction(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "by-hand":
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    elif not hasattr(tarfile, "data_filter"):
        pytest.skip("this Python has no tarfile extraction filters")
    return str(request.param)


async def test_export_keeps_the_tree_and_drops_links_that_lead_out(tmp_path: Path, extraction: str) -> None:
    repo = tmp_path / "repo"
    (repo / "pkg" / "deep").mkdir(parents=True)
    (repo / "pkg" / "mod.py").write_text("X = 1\n")
    (repo / "pkg" / "deep" / "data.txt").write_text("data\n")
    (repo / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (repo / "run.sh").chmod(0o755)
    os.symlink("pkg/mod.py", repo / "alias.py")  # inside: kept
    os.symlink("../mod.py", repo / "pkg" / "deep" / "up.py")  # inside, via ..: kept
    os.symlink("/etc/passwd", repo / "abs")  # absolute: dropped
    os.symlink("../outside", repo / "escape")  # out by ..: dropped
    os.symlink("m/../outside", repo / "l")  # inside lexically, out once m exists
    os.symlink(".", repo / "m")  # the root itself: kept
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base")
    (tmp_path / "outside").write_text("host file\n")

    dest = tmp_path / "export"
    await Workspace(repo, "main").export("HEAD", dest)

    assert (dest / "pkg" / "mod.py").read_text() == "X = 1\n"
    assert (dest / "pkg" / "deep" / "data.txt").read_text() == "data\n"
    assert os.access(dest / "run.sh", os.X_OK)
    assert (dest / "alias.py").read_text() == "X = 1\n"
    assert (dest / "pkg" / "deep" / "up.py").read_text() == "X = 1\n"
    assert not (dest / ".git").exists()
    for name in ("abs", "escape"):
        assert not os.path.lexists(dest / name), name
    # whichever of l and m survives, nothing in the export leads out of it
    root = os.path.realpath(dest)
    for path in dest.rglob("*"):
        assert os.path.commonpath([root, os.path.realpath(path)]) == root, path
