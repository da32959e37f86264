"""Hot reload: the server and workers watch their config files and take a change without a
person restarting them. An invalid new file is refused with a log line and the running settings
stay; a valid one is handed to the process, which applies what it can live (the server's
per-request sections) or drains and restarts itself (a worker whose settings changed).

The watching is `watchfiles` (Rust notify, the library uvicorn's own --reload uses); folders are
watched rather than the files, because editors and `PUT /config` replace a file by renaming.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from watchfiles import awatch

from tamma.config import Settings, load_settings, read_layers
from tamma.errors import ConfigError

log = logging.getLogger("tamma.reload")

#: exit status of a worker that drained to restart with new settings (the launcher re-execs)
RESTART = 75


def watched_files(config_file: Path | None) -> list[Path]:
    """The files a reload reads: the base file (even before it exists) and the TAMMA_ENV one."""
    try:
        files = read_layers(config_file).files
    except ConfigError:
        files = []
    if config_file is not None and config_file not in files:
        files.append(config_file)
    return [f.expanduser().absolute() for f in files]


async def watch_settings(
    files: list[Path],
    on_change: Callable[[Settings], Awaitable[None]],
    config_file: Path | None,
    stop: asyncio.Event | None = None,
) -> None:
    """Until `stop`: on each change to one of `files`, read settings again; refuse an invalid
    file (the running settings stay), hand a valid one to `on_change`."""
    if not files:
        return
    names = {str(f) for f in files}
    folders = sorted({str(f.parent) for f in files if f.parent.is_dir()})
    if not folders:
        return

    def ours(_change: Any, path: str) -> bool:
        return path in names

    async for _ in awatch(*folders, watch_filter=ours, stop_event=stop, debounce=300, step=100):
        try:
            new = await asyncio.to_thread(load_settings, config_file)
        except ConfigError as exc:
            log.error("config change refused, the running settings stay: %s", exc.message)
            continue
        await on_change(new)


def changed_keys(old: Settings, new: Settings) -> list[str]:
    """Dotted names of the settings that differ (values not shown: some are secrets)."""
    out: list[str] = []

    def walk(a: Any, b: Any, prefix: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                walk(a.get(key), b.get(key), f"{prefix}{key}.")
        elif a != b:
            out.append(prefix.rstrip("."))

    walk(old.model_dump(mode="json"), new.model_dump(mode="json"), "")  # secrets dump masked...
    if old.secrets() != new.secrets():
        out.append("(a secret)")  # ...so a changed secret is said without saying which value
    return out


def reexec() -> None:
    """Replace this process with a fresh start of the same command (new settings, same PID, so
    supervisors and PID files keep following it)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *sys.argv])
