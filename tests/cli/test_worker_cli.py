"""`tamma worker` under a supervisor: what it logs goes to its own stderr as JSON lines (the
per-user file is for interactive commands, where logs would tear the live view)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_the_worker_logs_json_lines_to_its_stderr(cli_env: dict[str, str], tmp_path: Path) -> None:
    err = tmp_path / "stderr"
    env = dict(cli_env, TAMMA_WORKER__CONCURRENCY="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tamma", "worker"], env=env, stdout=subprocess.DEVNULL, stderr=err.open("wb"),
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "worker polling" not in err.read_text(errors="replace"):
            assert time.monotonic() < deadline and proc.poll() is None, err.read_text(errors="replace")
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert proc.returncode == 0
    lines = [ln for ln in err.read_text().splitlines() if ln.strip()]
    records = [json.loads(ln) for ln in lines]  # every line is JSON: no ANSI, no plain text mixed in
    ready = next(r for r in records if "worker polling" in r["msg"])
    assert ready["logger"] == "tamma.worker" and ready["level"] == "info"
    assert "\x1b" not in err.read_text()


def test_a_worker_whose_disk_cannot_take_steps_refuses_to_start(cli_env: dict[str, str]) -> None:
    env = dict(cli_env, TAMMA_WORKER__MIN_FREE_MB=str(10**9))  # more free space than any disk has
    run = subprocess.run(
        [sys.executable, "-m", "tamma", "worker"], env=env, capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert run.returncode != 0
    assert "this worker cannot run steps" in run.stderr and "below worker.min_free_mb" in run.stderr, run.stderr
