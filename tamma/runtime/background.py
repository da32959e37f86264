"""A background worker for the embedded default.

When a `tamma start` that was running the only worker is detached with Ctrl-C, it hands the
work to a detached `tamma worker` process so the workflow really goes on. Its PID is recorded
in the data dir; `tamma temporal stop` ends it (and only it) by that PID.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tamma.agent.safefs import private_dir
from tamma.runtime import pids


def _pid_file(data_dir: Path) -> Path:
    return data_dir / "worker.pid"


def running_pid(data_dir: Path) -> int | None:
    f = _pid_file(data_dir)
    pid = pids.read_pid(f)
    if pid is None or not pids.runs(pid, "tamma"):
        f.unlink(missing_ok=True)
        return None
    return pid


def spawn_background_worker(data_dir: Path, config_file: Path | None = None) -> int:
    """Start (or find) the background worker; return its PID."""
    pid = running_pid(data_dir)
    if pid is not None:
        return pid
    private_dir(data_dir)
    env = dict(os.environ, TAMMA_DATA_DIR=str(data_dir))
    if config_file is not None:
        env["TAMMA_CONFIG"] = str(config_file.resolve())
    log = (data_dir / "worker.log").open("ab")
    # a frozen build (PyInstaller) is `tamma` itself: it takes the command, not `-m tamma`
    argv = [sys.executable, "worker"] if getattr(sys, "frozen", False) else [sys.executable, "-m", "tamma", "worker"]
    proc = subprocess.Popen(
        argv,
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    _pid_file(data_dir).write_text(str(proc.pid), encoding="utf-8")
    return proc.pid


def stop_background_worker(data_dir: Path, grace_s: float = 40.0) -> int | None:
    pid = running_pid(data_dir)
    if pid is None:
        return None
    _pid_file(data_dir).unlink(missing_ok=True)
    pids.terminate(pid, grace_s)  # the worker drains its running activities first
    return pid
