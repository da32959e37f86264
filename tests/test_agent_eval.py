"""The resolve-rate suite (bench/agent_eval.py) guards its own mechanics in CI: with the scripted
model replaying each known trajectory, every task must be resolved (a miss is a broken mechanic:
detection, setup, the baseline, the tools or the gate), including the tasks that need exploring
(the bug in a file the issue does not name, a fix across two packages, a bug reproduced first)
with hidden tests. And the judge is not a rubber stamp: a wrong fix is not resolved, and a task
made from a repository's history is judged by the tests its fixing commit added."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _eval(*args: str) -> dict[str, Any]:
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "agent_eval.py"), *args, "--json"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert run.stdout.strip().startswith("{"), run.stdout[-3000:] + run.stderr[-3000:]
    doc: dict[str, Any] = json.loads(run.stdout)
    doc["exit"] = run.returncode
    return doc


def test_the_eval_suite_resolves_every_task_with_the_scripted_model() -> None:
    doc = _eval("--tasks", "c-make,agents-md,node-test,rust-crate")
    ran = [t for t in doc["tasks"] if t["resolved"] is not None]
    assert doc["exit"] == 0 and ran and all(t["resolved"] for t in ran), doc["tasks"]
    assert doc["totals"]["rate"] == 1.0 and doc["totals"]["turns"] == 4 * len(ran)


def test_tasks_that_need_exploring_are_resolved_and_judged_by_hidden_tests() -> None:
    """Each scripted step checks what its tool saw (the search found the unnamed file, the
    reproduction failed before the fix and passed after), and the hidden tests ran at the end."""
    doc = _eval("--tasks", "explore-unnamed-file,fix-across-two-packages,reproduce-first")
    rows = {t["task"]: t for t in doc["tasks"]}
    for name, row in rows.items():
        if row["resolved"] is None:
            assert name == "fix-across-two-packages" and "not installed" in row["why"]
            continue
        assert row["resolved"], row
    assert rows["explore-unnamed-file"]["turns"] == 7 and "10 ran" in rows["explore-unnamed-file"]["why"]
    assert rows["reproduce-first"]["turns"] == 8 and doc["exit"] == 0


def test_a_wrong_fix_is_not_resolved_and_says_which_hidden_tests_still_fail(tmp_path: Path) -> None:
    tasks = json.loads((ROOT / "tests/fixtures/repos/eval-tasks.json").read_text())
    wrong = tasks["reproduce-first"] | {
        "steps": [
            {
                "tool": "edit_file",
                "args": {
                    "path": "inflection/__init__.py",
                    "old_text": "if number in (11, 12, 13):",
                    "new_text": "if number in (11, 12, 13, 111):",  # fixes one case, not the rule
                },
            }
        ]
    }
    (tmp_path / "tasks.json").write_text(json.dumps({"wrong-ordinal": wrong}))
    doc = _eval("--task-file", str(tmp_path / "tasks.json"), "--tasks", "wrong-ordinal")
    (row,) = doc["tasks"]
    assert row["resolved"] is False and doc["exit"] == 1, row
    assert "hidden tests still fail" in row["why"] and "1013" in row["why"], row["why"]


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip()


def test_a_task_from_a_fix_in_the_repository_s_history(tmp_path: Path) -> None:
    """The commit before the fix is the start, the commit's test file the hidden judge, its
    other files the scripted fix; a commit that changes no test cannot make a task."""
    repo = tmp_path / "app"
    (repo / "tests").mkdir(parents=True)
    (repo / "pyproject.toml").write_text(
        '[project]\nname = "calc"\nversion = "1.0"\n[project.optional-dependencies]\ntest = ["pytest"]\n'
    )
    (repo / "calc.py").write_text("def mean(xs):\n    return sum(xs) / (len(xs) + 1)\n")
    (repo / "tests" / "test_calc.py").write_text(
        "from calc import mean\n\n\ndef test_one():\n    assert mean([2]) == 2 or True\n"
    )
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "mean()")
    (repo / "calc.py").write_text("def mean(xs):\n    return sum(xs) / len(xs)\n")
    (repo / "tests" / "test_calc.py").write_text(
        "from calc import mean\n\n\ndef test_one():\n    assert mean([2]) == 2\n\n\n"
        "def test_two():\n    assert mean([1, 3]) == 2\n"
    )
    _git(repo, "commit", "-qam", "mean() divided by one too many")
    fix = _git(repo, "rev-parse", "HEAD")
    doc = _eval("--from-commit", f"{repo}:{fix}", "--tasks", f"app@{fix[:8]}")
    (row,) = doc["tasks"]
    assert row["resolved"] is True and doc["exit"] == 0, row
    (repo / "README").write_text("x\n")
    _git(repo, "add", "README")
    _git(repo, "commit", "-qm", "docs")
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "agent_eval.py"), "--from-commit", f"{repo}:HEAD"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode != 0 and "changes no test file" in run.stderr, run.stderr


def test_a_link_the_agent_leaves_where_a_hidden_test_goes_is_removed_not_written_through(tmp_path: Path) -> None:
    """The agent's code runs with the workspace writable: it plants a link where the hidden test
    will be written, pointing at a file of the user's. The eval removes the link and writes the
    test in its place; the user's file is untouched."""
    victim = tmp_path / "nothing-here-yet.py"  # where the user has no file: none may appear
    tasks = json.loads((ROOT / "tests/fixtures/repos/eval-tasks.json").read_text())
    fix = next(s for s in tasks["reproduce-first"]["steps"] if s["tool"] == "edit_file")
    planted = tasks["reproduce-first"] | {
        "steps": [{"tool": "run", "args": {"command": f"ln -s {victim} test_hidden_ordinal.py"}}, fix]
    }
    (tmp_path / "tasks.json").write_text(json.dumps({"planted-link": planted}))
    doc = _eval("--task-file", str(tmp_path / "tasks.json"), "--tasks", "planted-link")
    (row,) = doc["tasks"]
    assert row["resolved"] is True, row
    assert not os.path.lexists(victim)
