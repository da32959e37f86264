"""A worker that cannot isolate agent code refuses to start, saying what is missing and how to
fix or opt out; it never falls back to running agent code unisolated."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_worker_without_a_working_backend_refuses_with_the_fix(tmp_path: Path) -> None:
    env = dict(
        os.environ,
        TAMMA_DATA_DIR=str(tmp_path),
        TAMMA_TEMPORAL__ADDRESS="127.0.0.1:9",  # never reached: the check comes first
        TAMMA_AGENT__SANDBOX__BACKEND="container",
        TAMMA_AGENT__SANDBOX__ENGINE="podman",
        TAMMA_AGENT__SANDBOX__IMAGE="localhost/no-such-image:none",
    )
    done = subprocess.run(
        [sys.executable, str(ROOT / "worker.py")], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0
    err = done.stderr.strip().splitlines()
    assert err and err[-1].startswith("error: refusing to run agent code"), done.stderr
    assert "agent.sandbox.backend is container" in err[-1] and 'backend = "none"' in err[-1]
    assert "Traceback" not in done.stderr


def test_worker_with_backend_none_starts_but_says_so(tmp_path: Path) -> None:
    env = dict(
        os.environ,
        TAMMA_DATA_DIR=str(tmp_path),
        TAMMA_TEMPORAL__ADDRESS="127.0.0.1:9",
        TAMMA_TEMPORAL__CONNECT_TIMEOUT_S="1",
        TAMMA_AGENT__SANDBOX__BACKEND="none",
    )
    log = tmp_path / "worker.log"
    worker = subprocess.Popen(
        [sys.executable, str(ROOT / "worker.py")], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        # it starts (and then waits for its Temporal server, which is not there)
        while "retrying in" not in log.read_text(errors="replace"):
            assert worker.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        text = log.read_text()
        assert "WITHOUT isolation" in text  # loud, before it even tries Temporal
        assert text.index("WITHOUT isolation") < text.index("cannot reach Temporal")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
