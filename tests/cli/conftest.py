"""CLI tests run `tamma` in subprocesses against the session's Temporal dev server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tamma.config import Settings
from tamma.demo import make_sample_repo


@pytest.fixture
def cli_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAMMA_")}
    env.update(
        TAMMA_TEMPORAL__ADDRESS=settings.temporal.address or "",
        TAMMA_TEMPORAL__TASK_QUEUE=settings.temporal.task_queue,
        TAMMA_DATA_DIR=str(settings.data_dir),
        TAMMA_CONFIG="",
        COLUMNS="200",
    )
    return env


def tamma(
    env: dict[str, str], *args: str, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tamma", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_sample_repo(tmp_path / "repo")
