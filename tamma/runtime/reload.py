"""Hot reload: the server and workers watch their config files and take a change without a
person restarting them. An invalid new file is refused with a log line and the running settings
stay; a valid one is handed to the process, which applies what it can live (the server's
per-request sections) or drains and restarts itself (a worker whose settings changed).

The watching is `watchfiles` (Rust notify, the library uvicorn's own --reload uses); folders are
watched rather than the files, because editors and `PUT /config` replace a file by renaming.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import sys
import time
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


def files_digest(files: list[Path]) -> str:
    """What the config files hold now (links followed: a Kubernetes ConfigMap swaps a `..data`
    link, not the file), "" for a missing one."""
    h = hashlib.sha256()
    for f in files:
        try:
            h.update(f.read_bytes())
        except OSError:
            h.update(b"\0missing")
        h.update(b"\0\0")
    return h.hexdigest()


def _empty(files: list[Path]) -> list[Path]:
    out = []
    for f in files:
        try:
            if f.exists() and not f.read_bytes().strip():
                out.append(f)
        except OSError:
            continue
    return out


async def settled(files: list[Path], quiet_s: float = 0.3, limit_s: float = 10.0) -> str:
    """Wait until the files stop changing (two reads `quiet_s` apart agree) and return their
    digest: an editor or `cat >` may leave a file empty or half-written for a moment."""
    deadline = time.monotonic() + limit_s
    last = files_digest(files)
    while time.monotonic() < deadline:
        await asyncio.sleep(quiet_s)
        now = files_digest(files)
        if now == last:
            return now
        last = now
    return last


#: why the last change to the config file was refused ("" when the running settings are the file's)
last_refusal = ""


def _refuse(why: str) -> None:
    global last_refusal
    last_refusal = why
    log.error("config change refused, the running settings stay: %s", why)


async def watch_settings(
    files: list[Path],
    on_change: Callable[[Settings], Awaitable[None]],
    config_file: Path | None,
    stop: asyncio.Event | None = None,
    loaded: str = "",
) -> None:
    """Until `stop`: when the content of one of `files` changes, wait for it to settle, read the
    settings again and hand them to `on_change` — only when the file is whole and valid. A file
    that became empty (a write in progress, a truncation) or does not validate is refused: the
    running settings stay, and the reason is logged and kept in `last_refusal`. `loaded` is the
    digest of what the running settings were read from, so an edit made before this watcher
    started is still seen."""
    global last_refusal
    if not files:
        return
    folders = sorted({str(f.parent) for f in files if f.parent.is_dir()})
    if not folders:
        return
    good = loaded or files_digest(files)
    had_content = {f for f in files if f.exists() and f not in _empty(files)}

    async def consider() -> None:
        nonlocal good, had_content
        global last_refusal
        if files_digest(files) == good:
            return
        digest = await settled(files)
        if digest == good:
            return
        emptied = [f for f in _empty(files) if f in had_content]
        if emptied:
            _refuse(f"{emptied[0]} is empty (a write in progress, or truncated); write the whole file at once")
            return
        try:
            new = await asyncio.to_thread(load_settings, config_file)
        except ConfigError as exc:
            _refuse(exc.message)
            return
        if files_digest(files) != digest:
            return  # it changed again while it was read: the next event brings it
        good, last_refusal = digest, ""
        had_content = {f for f in files if f.exists() and f not in _empty(files)}
        os.environ[EXPECTED_DIGEST] = digest  # a re-exec'd worker waits for exactly this content
        await on_change(new)

    await consider()
    # Not recursive: only the folders' own entries (the files, a ConfigMap's `..data` link) can
    # change what the files hold; watching a working directory's whole tree costs start time
    # and inotify watches for nothing.
    async for _ in awatch(*folders, stop_event=stop, debounce=300, step=100, recursive=False):
        await consider()


#: set before a worker re-execs: the config content it validated, which the new process waits for
EXPECTED_DIGEST = "TAMMARELOAD_CONFIG_DIGEST"  # not TAMMA_*: that prefix is read as settings


def load_settled(config_file: Path | None, limit_s: float = 10.0) -> Settings:
    """Settings for a process that starts (or re-execs after a reload): when the validated
    content is known (`EXPECTED_DIGEST`), wait up to `limit_s` for the files to hold it again
    and to be still, so a worker never starts on a file caught half-written."""
    expected = os.environ.pop(EXPECTED_DIGEST, "")
    if expected:
        files = watched_files(config_file)
        deadline = time.monotonic() + limit_s
        previous = files_digest(files)
        while time.monotonic() < deadline:
            time.sleep(0.2)
            now = files_digest(files)
            if now == expected or (now == previous and not _empty(files)):
                break
            previous = now
    global loaded_digest
    loaded_digest = files_digest(watched_files(config_file))
    return load_settings(config_file)


#: the digest of the config files a process's settings were read from (by `load_settled`)
loaded_digest = ""


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
