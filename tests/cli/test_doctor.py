"""`tamma doctor` on real repositories: what it would run, and a clear no when it cannot."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.cli.conftest import tamma

FIXTURES = Path(__file__).parents[1] / "fixtures" / "repos"
pytestmark = pytest.mark.slow


def repo(name: str, dest: Path) -> Path:
    shutil.copytree(FIXTURES / name, dest)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base"]):
        subprocess.run(["git", *args], cwd=dest, check=True, capture_output=True)
    return dest


def test_doctor_shows_the_command_its_source_and_the_baseline(cli_env: dict[str, str], tmp_path: Path) -> None:
    run = tamma(cli_env, "doctor", "--repo", str(repo("agents-md", tmp_path / "r")))
    out = " ".join(run.stdout.split())
    assert run.returncode == 0, run.stdout + run.stderr
    assert "sh tests/run.sh (the test command AGENTS.md gives)" in out
    assert "TAP: 4 ran, 3 passed, 1 failed" in out and "trimmed_length drops a trailing newline" in out
    assert "Tamma can test changes to this repository" in out


def test_doctor_says_what_is_broken_and_what_to_do(cli_env: dict[str, str], tmp_path: Path) -> None:
    if shutil.which("npm") is None:
        pytest.skip("npm not installed")
    run = tamma(cli_env, "doctor", "--repo", str(repo("broken-node", tmp_path / "r")))
    out = " ".join(run.stdout.split())
    assert run.returncode == 1
    assert "Cannot test this repository" in out and "mocha: not found" in out and "agent.test_command" in out


def test_doctor_on_a_repository_without_tests(cli_env: dict[str, str], tmp_path: Path) -> None:
    run = tamma(cli_env, "doctor", "--repo", str(repo("no-tests", tmp_path / "r")), timeout=300)
    out = " ".join(run.stdout.split())
    assert run.returncode == 1 and "no test command found" in out and "Not tested" in out
