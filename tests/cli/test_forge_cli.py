"""`tamma start --issue N` in a clone of a GitHub repository, with a token set, works on GitHub."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tamma.config import Settings
from tamma.demo import DEMO_BODY, DEMO_TITLE, make_sample_repo
from tamma.providers.scripted import DEMO_TRANSCRIPT
from tests.standins.git_remote import BareRemote, git
from tests.standins.github_api import FakeGitHub
from tests.standins.http import serve

pytestmark = pytest.mark.slow


def test_start_in_a_github_clone(settings: Settings, tmp_path: Path) -> None:
    remote = BareRemote.from_worktree(make_sample_repo(tmp_path / "src"), tmp_path / "remote.git")
    fake = FakeGitHub("octo-cli", "hello", remote, "ghp_cli")
    fake.add_issue(1, DEMO_TITLE, DEMO_BODY)
    with serve(fake) as s:
        fake.base = s.url
        work = tmp_path / "clone"
        git(tmp_path, "clone", "-q", str(remote.path), str(work))
        git(work, "remote", "set-url", "origin", f"{s.url}/octo-cli/hello.git")  # how the forge names it
        env = {k: v for k, v in os.environ.items() if not k.startswith("TAMMA_")}
        env.update(
            TAMMA_TEMPORAL__ADDRESS=settings.temporal.address or "",
            TAMMA_TEMPORAL__TASK_QUEUE=settings.temporal.task_queue,
            TAMMA_DATA_DIR=str(settings.data_dir),
            GITHUB_TOKEN="ghp_cli",
            TAMMA_GITHUB__BASE_URL=s.url,
            TAMMA_GITHUB__GIT_URL=str(remote.path),
            TAMMA_CONFIG="",
            COLUMNS="200",
        )
        run = subprocess.run(
            [sys.executable, "-m", "tamma", "start", "--issue", "1", "--transcript", str(DEMO_TRANSCRIPT)],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "tamma:github:octo-cli/hello#1" in run.stdout and "Merged tamma/issue-1" in run.stdout
    assert "https://github.test/octo-cli/hello/pull/" in run.stdout
    assert "(page - 1)" in git(remote.path, "show", "main:pager.py")
    assert "ghp_cli" not in run.stdout + run.stderr
