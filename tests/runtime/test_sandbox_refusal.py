"""A worker that cannot isolate agent code refuses to start, saying what is missing and how to
fix or opt out; it never falls back to running agent code unisolated."""

from __future__ import annotations

import os
import subprocess
import sys
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
    done = subprocess.run(
        [sys.executable, str(ROOT / "worker.py")], env=env, capture_output=True, text=True, timeout=120
    )
    assert "WITHOUT isolation" in done.stderr  # loud, before it even tries Temporal
