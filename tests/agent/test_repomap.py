"""The repository map the analyse and plan steps read: symbols per language, ranking by the
issue, the budget, and the check of the files a plan names."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tamma.agent.repomap import missing_files, repo_map, symbols

FIXTURES = Path(__file__).parents[1] / "fixtures" / "repos"


def test_symbols_per_language() -> None:
    assert symbols("a.py", "def f():\n    pass\nclass K:\n    def m(self): pass\n") == ["f()", "class K(m)"]
    assert symbols("a.ts", "export function go() {}\nexport const make = (x) => x\nclass Box {}\n") == ["go", "make", "Box"]
    assert symbols("a.go", "func (w *W) Wrap(s string) {}\ntype W struct{}\n") == ["Wrap", "W"]
    assert symbols("a.rs", "pub fn to_roman(n: u32) {}\nstruct S;\n") == ["to_roman", "S"]
    assert symbols("a.c", "int clamp(int v, int lo, int hi) {\n    return v;\n}\nstatic int n;\n") == ["clamp"]
    assert symbols("a.py", "def broken(:\n") == []  # unparsable: path only


def test_the_files_the_issue_is_about_come_first_and_the_map_fits_its_budget(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    repo.mkdir()
    (repo / "billing").mkdir()
    (repo / "billing" / "invoice.py").write_text("def total_with_tax(lines):\n    pass\n")
    for i in range(300):
        (repo / f"mod{i:03}.py").write_text(f"def helper_{i}():\n    pass\n")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    mapped = repo_map(repo, "The invoice total ignores the tax rate", budget_chars=2000)
    assert mapped.splitlines()[0] == "billing/invoice.py: total_with_tax()"
    assert len(mapped) <= 2100 and "more files" in mapped.splitlines()[-1]


def test_a_published_repository(tmp_path: Path) -> None:
    mapped = repo_map(FIXTURES / "more-itertools", "dotproduct() adds instead of multiplying")
    first = mapped.splitlines()[0]
    assert first.startswith("more_itertools/recipes.py: ") and "dotproduct()" in first


def test_files_a_plan_may_name(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("")
    assert missing_files(tmp_path, ["src/a.py", "src/new.py"]) == []  # existing, or new in an existing folder
    assert missing_files(tmp_path, ["lib/x.py", "../outside.py", ".git/config"]) == ["lib/x.py", "../outside.py", ".git/config"]


def test_mapping_a_repository_runs_none_of_its_git_config(tmp_path: Path) -> None:
    """The map lists files with git on the host: a clone whose config names an fsmonitor (as
    sandboxed code could write one) must not get that program run."""
    repo = tmp_path / "r"
    repo.mkdir()
    (repo / "a.py").write_text("def f():\n    pass\n")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    marker = tmp_path / "ran"
    monitor = tmp_path / "monitor.sh"
    monitor.write_text(f"#!/bin/sh\ntouch {marker}\n")
    monitor.chmod(0o755)
    subprocess.run(["git", "config", "core.fsmonitor", str(monitor)], cwd=repo, check=True)
    assert repo_map(repo, "f").startswith("a.py: f()")
    assert not marker.exists()
