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


def test_a_repository_whose_tests_need_a_submodule_is_told_why_they_cannot_run(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    """Tamma never fetches submodules (the repository chooses their URLs: hostile input), so a
    repository whose tests import a submodule's code cannot be tested, and doctor says that is why."""
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "protocol.file.allow=always"]
    vendored = tmp_path / "units"
    vendored.mkdir()
    (vendored / "units.py").write_text("KM = 1000\n")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "units"]):
        subprocess.run([*git, *args], cwd=vendored, check=True, capture_output=True)
    app = tmp_path / "app"
    (app / "tests").mkdir(parents=True)
    (app / "tests" / "test_distance.py").write_text(
        "import sys\nsys.path.insert(0, 'vendor/units')\nfrom units import KM\n\n\ndef test_km():\n    assert KM == 1000\n"
    )
    for args in (
        ["init", "-q", "-b", "main"],
        ["submodule", "add", "-q", str(vendored), "vendor/units"],
        ["add", "-A"],
        ["commit", "-qm", "base"],
    ):
        subprocess.run([*git, *args], cwd=app, check=True, capture_output=True)
    run = tamma(cli_env, "doctor", "--repo", str(app), timeout=300)
    out = " ".join(run.stdout.split())
    assert run.returncode == 1, out
    assert "Cannot test this repository" in out and "git submodules (vendor/units)" in out, out
    assert "does not fetch" in out and "agent.test_command" in out


def test_a_repository_whose_test_data_is_in_git_lfs_is_told_its_files_are_pointers_here(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    app = tmp_path / "app"
    (app / "tests").mkdir(parents=True)
    (app / ".gitattributes").write_text("*.csv filter=lfs diff=lfs merge=lfs -text\n")
    pointer = "version https://git-lfs.github.com/spec/v1\noid sha256:" + "ab" * 32 + "\nsize 2048\n"
    (app / "tests" / "rates.csv").write_text(pointer)  # what a checkout without LFS holds
    (app / "tests" / "test_rates.py").write_text(
        "import csv, pathlib\n\n\ndef test_rates_have_a_header():\n"
        "    rows = list(csv.reader(pathlib.Path(__file__).with_name('rates.csv').open()))\n"
        "    assert rows[0] == ['currency', 'rate']\n\n\ndef test_nothing_else():\n    assert True\n"
    )
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "b"]):
        subprocess.run(["git", *args], cwd=app, check=True, capture_output=True)
    run = tamma(cli_env, "doctor", "--repo", str(app), timeout=300)
    out = " ".join(run.stdout.split())
    assert run.returncode == 0, out  # it can be tested: one test fails on the base commit already
    assert "already failing: tests/test_rates.py::test_rates_have_a_header" in out, out
    assert "files matching *.csv are stored with Git LFS" in out and "pointers, not their contents" in out
