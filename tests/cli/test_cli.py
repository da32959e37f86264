"""The CLI driven end to end in subprocesses against the session's Temporal dev server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tamma.config import Settings
from tamma.demo import make_sample_repo
from tamma.providers.scripted import DEMO_TRANSCRIPT
from tamma.runtime.background import running_pid
from tests.cli.conftest import tamma

pytestmark = pytest.mark.slow


def test_issue_create_start_status_list(cli_env: dict[str, str], repo: Path) -> None:
    created = tamma(cli_env, "issue", "create", "Fix off-by-one in paginate()", "--body", "page 1 is wrong", cwd=repo)
    assert created.returncode == 0 and created.stdout.strip() == "#1 Fix off-by-one in paginate()"
    fresh = tamma(cli_env, "issue", "show", "1", cwd=repo)
    assert "Task: none yet — `tamma start --issue 1` starts one" in fresh.stdout, fresh.stdout + fresh.stderr
    run = tamma(cli_env, "start", "--issue", "1", "--transcript", str(DEMO_TRANSCRIPT), cwd=repo)
    assert run.returncode == 0, run.stdout + run.stderr
    for expected in (
        "scripted replay",
        "Worker: in this process",
        "✔ implement",
        "✔ run tests",
        "Merged tamma/issue-1",
    ):
        assert expected in run.stdout
    status = tamma(cli_env, "status", "1", cwd=repo)
    assert "[merged]" in status.stdout and "✔ merge" in status.stdout
    shown = tamma(cli_env, "issue", "show", "1", cwd=repo)  # the issue with Tamma's task on it
    assert shown.returncode == 0 and f"Task: tamma:local:{repo}#1 [merged]" in shown.stdout, shown.stdout
    assert "Pull request: " in shown.stdout and "(closed)" in shown.stdout.splitlines()[0]
    for _ in range(50):  # visibility is eventually consistent
        listing = tamma(cli_env, "list", "--status", "merged", "--repository", f"local:{repo}")
        if f"local:{repo}#1" in listing.stdout.replace("\n", ""):
            break
        time.sleep(0.2)
    assert f"local:{repo}#1" in listing.stdout.replace("\n", "")
    again = tamma(cli_env, "start", "--issue", "1", "--transcript", str(DEMO_TRANSCRIPT), cwd=repo)
    assert again.returncode == 0 and "Attached to" in again.stdout  # no second run of a merged issue


def test_ctrl_c_detaches_and_status_follow_reattaches(cli_env: dict[str, str], repo: Path, settings: Settings) -> None:
    env = dict(cli_env, TAMMA_APPROVAL__AUTO_APPROVE="false")
    assert tamma(env, "issue", "create", "Fix off-by-one in paginate()", cwd=repo).returncode == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "tamma", "start", "--issue", "1", "--transcript", str(DEMO_TRANSCRIPT)],
        env=env,
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    seen = ""
    deadline = time.monotonic() + 60
    while "Waiting for a decision" not in seen:
        assert time.monotonic() < deadline, seen
        seen += proc.stdout.readline()
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=30)
    out = seen + rest
    try:
        assert proc.returncode == 130, out
        assert "Detached from" in out and "tamma status" in out and "background worker (pid" in out
        status = tamma(env, "status", "1", cwd=repo)
        assert "[awaiting_approval]" in status.stdout  # the workflow is still there, waiting
        approved = tamma(env, "approve", "1", "--reason", "ok", cwd=repo)
        assert approved.returncode == 0 and "approved" in approved.stdout
        follow = tamma(env, "status", "1", "--follow", cwd=repo)
        assert follow.returncode == 0 and "Merged tamma/issue-1" in follow.stdout, follow.stdout + follow.stderr
        assert "(already running)" in follow.stdout  # the background worker did the work
        import getpass

        assert f"approved by cli:{getpass.getuser()}" in follow.stdout  # the person, not just "cli"
        second = tamma(env, "approve", "1", cwd=repo)
        assert second.returncode != 0 and "not running" in second.stderr
    finally:
        stopped = tamma(env, "temporal", "stop")
        assert "background worker" in stopped.stdout
    assert running_pid(settings.data_dir) is None


def test_reject_from_another_shell(cli_env: dict[str, str], repo: Path) -> None:
    env = dict(cli_env, TAMMA_APPROVAL__AUTO_APPROVE="false")
    tamma(env, "issue", "create", "Fix off-by-one in paginate()", cwd=repo)
    started = tamma(env, "start", "--issue", "1", "--detach", "--transcript", str(DEMO_TRANSCRIPT), cwd=repo)
    assert started.returncode == 0 and "Started" in started.stdout
    try:
        follow = subprocess.Popen(
            [sys.executable, "-m", "tamma", "status", "1", "--follow"],
            env=env,
            cwd=repo,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        time.sleep(0.5)
        for _ in range(100):
            if "[awaiting_approval]" in tamma(env, "status", "1", cwd=repo).stdout:
                break
            time.sleep(0.2)
        rejected = tamma(env, "reject", "1", "--reason", "not now", cwd=repo)
        assert rejected.returncode == 0, rejected.stderr
        out, _ = follow.communicate(timeout=60)
        assert follow.returncode == 1 and "rejected" in out
    finally:
        tamma(env, "temporal", "stop")


def test_a_detached_start_brings_a_worker_and_status_says_when_none_runs(
    cli_env: dict[str, str], repo: Path, settings: Settings
) -> None:
    """`start --detach` with no worker running used to leave the task queued forever; `status`
    printed a bare [running] after a 5 s query timeout. Now the start brings the background
    worker and says so; once that worker is killed, status says who is missing at once."""
    env = dict(cli_env, TAMMA_APPROVAL__AUTO_APPROVE="false")
    tamma(env, "issue", "create", "Fix off-by-one in paginate()", cwd=repo)
    try:
        started = tamma(env, "start", "--issue", "1", "--detach", "--transcript", str(DEMO_TRANSCRIPT), cwd=repo)
        assert started.returncode == 0 and "Worker: started a background worker (pid" in started.stdout, started.stdout
        pid = running_pid(settings.data_dir)
        assert pid is not None
        deadline = time.monotonic() + 60
        while "[awaiting_approval]" not in (seen := tamma(env, "status", "1", cwd=repo).stdout):
            assert time.monotonic() < deadline, seen  # the background worker ran the task to its gate
            time.sleep(0.3)
        os.kill(pid, signal.SIGKILL)  # the worker this test's CLI started, by its PID
        deadline = time.monotonic() + 20
        while "waiting for a worker — none polling" not in (status := tamma(env, "status", "1", cwd=repo)).stdout:
            assert time.monotonic() < deadline, status.stdout
            time.sleep(0.5)
        assert status.returncode == 0 and "tamma worker" in status.stdout
    finally:
        tamma(env, "temporal", "stop")


@pytest.mark.parametrize(
    "args,code,message",
    [
        (["start", "--issue", "7"], 3, "issue #7 does not exist"),
        (["status", "abc"], 2, "neither a task id"),
    ],
)
def test_bad_input_in_a_repo(cli_env: dict[str, str], repo: Path, args: list[str], code: int, message: str) -> None:
    result = tamma(cli_env, *args, cwd=repo)
    assert result.returncode == code and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_not_a_git_repository(cli_env: dict[str, str], tmp_path: Path) -> None:
    result = tamma(cli_env, "start", "--issue", "1", cwd=tmp_path)
    assert result.returncode == 2 and "is not a git repository; run `git init`" in result.stderr


def test_unreadable_config(cli_env: dict[str, str], repo: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[temporal\n")
    result = tamma(cli_env, "--config", str(bad), "list", cwd=repo)
    assert result.returncode == 2 and "is not valid TOML" in result.stderr


def test_temporal_unreachable(cli_env: dict[str, str], repo: Path) -> None:
    env = dict(cli_env, TAMMA_TEMPORAL__ADDRESS="127.0.0.1:1", TAMMA_TEMPORAL__CONNECT_TIMEOUT_S="3")
    tamma(env, "issue", "create", "x", cwd=repo)
    result = tamma(env, "start", "--issue", "1", "--transcript", str(DEMO_TRANSCRIPT), cwd=repo)
    assert result.returncode == 4 and "cannot reach Temporal at 127.0.0.1:1" in result.stderr


def test_no_provider_configured_fails_before_starting(cli_env: dict[str, str], repo: Path) -> None:
    tamma(cli_env, "issue", "create", "x", cwd=repo)
    result = tamma(cli_env, "start", "--issue", "1", cwd=repo)
    assert result.returncode == 2 and "no LLM provider is configured" in result.stderr
    listing = tamma(cli_env, "list", "--repository", f"local:{repo}")
    assert listing.returncode == 0 and "local:" not in listing.stdout  # nothing half-created


def test_real_model_from_vendor_env_then_status_usage_and_replay(
    cli_env: dict[str, str], repo: Path, tmp_path: Path
) -> None:
    from tests.standins.demo_brain import anthropic_brain
    from tests.standins.http import serve

    key = "sk-ant-cli-test-1"
    with serve(anthropic_brain(key)) as standin:
        env = dict(cli_env, ANTHROPIC_API_KEY=key, ANTHROPIC_BASE_URL=standin.url)
        tamma(env, "issue", "create", "Fix off-by-one in paginate()", cwd=repo)
        run = tamma(env, "start", "--issue", "1", cwd=repo)
        assert run.returncode == 0, run.stdout + run.stderr
        assert "LLM: anthropic claude-sonnet-4-6" in run.stdout and len(standin.requests) == 6
    status = tamma(cli_env, "status", "1", cwd=repo)
    assert "Model usage" in status.stdout and "implement" in status.stdout
    recorded = next(line for line in status.stdout.splitlines() if line.startswith("Recorded exchanges: "))
    folder = recorded.split(": ", 1)[1].strip()
    other = make_sample_repo(tmp_path / "other")
    tamma(cli_env, "issue", "create", "Fix off-by-one in paginate()", cwd=other)
    replay = tamma(cli_env, "replay", folder, "--issue", "1", cwd=other)
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "scripted replay" in replay.stdout and "Merged tamma/issue-1" in replay.stdout
