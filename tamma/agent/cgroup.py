"""Memory and process limits for a whole sandbox, through the kernel's control groups.

An rlimit bounds one process: six processes under ``RLIMIT_AS=512 MB`` hold 3 GB between them.
A cgroup bounds the sandbox as one: every process the command starts is charged to it, the
kernel's OOM killer acts inside it at ``memory_mb``, and ``pids_max`` stops a fork bomb.

Where one can be had:

- **cgroup v2** with a delegated subtree (systemd ``Delegate=yes``, a container started with its
  own cgroup namespace and a writable ``/sys/fs/cgroup``): as systemd's delegation rules ask,
  the worker first moves its own processes into a ``worker`` leaf of the cgroup it was started
  in, enables the ``memory`` and ``pids`` controllers there, then makes one child cgroup per
  sandbox beside that leaf. ``agent.sandbox.cgroup_parent`` names another delegated cgroup.
- **cgroup v1** (the ``memory`` and ``pids`` hierarchies, writable: a root worker on a v1 host):
  one child in each hierarchy, under the worker's own cgroup there.
- Otherwise nothing: the sandbox keeps its per-process rlimits, `detect` says why, and the
  worker prints it at start (``isolation_summary``).

No library manages cgroups from Python without systemd's D-Bus (which a container rarely has),
so the few file writes are made here by hand.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
_CONTROLLERS = ("memory", "pids")
_detected: tuple[CgroupParent | None, str] | None = None


@dataclass(frozen=True)
class CgroupParent:
    """Where sandbox cgroups are made: one directory (v2), or the memory and pids ones (v1)."""

    version: int
    dirs: tuple[Path, ...]

    def describe(self) -> str:
        return f"cgroup v{self.version}"


@dataclass
class Sandbox:
    """One sandbox's cgroup: its directories (made, limited), joined by the command's wrapper."""

    version: int
    dirs: tuple[Path, ...]
    memory_mb: int

    @property
    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs]

    def wrap(self, argv: list[str]) -> list[str]:
        """`argv`, started from a shell that first moves itself into the cgroup (every process
        it starts is then charged there); it refuses to run the command if it cannot join."""
        joins = " && ".join(f'echo $$ > "${i + 1}"' for i in range(len(self.dirs)))
        script = f'{joins} || {{ echo "tamma: cannot join the sandbox cgroup" >&2; exit 125; }}; '
        script += f'shift {len(self.dirs)}; exec "$@"'
        return ["/bin/sh", "-c", script, "tamma-cgroup", *self.procs_files, *argv]

    def oom_kills(self) -> int:
        """How many processes the kernel killed at this sandbox's memory limit."""
        memory = self.dirs[0]
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        with contextlib.suppress(OSError, ValueError):
            for line in (memory / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        return 0

    def remove(self) -> None:
        """Kill whatever is still in the cgroup (a daemon the test left), then remove it."""
        for directory in self.dirs:
            kill = directory / "cgroup.kill"
            for _ in range(50):
                if not directory.exists():
                    break
                if kill.exists():
                    with contextlib.suppress(OSError):
                        kill.write_text("1")
                else:
                    for pid in _pids(directory):
                        with contextlib.suppress(ProcessLookupError, PermissionError):
                            os.kill(pid, signal.SIGKILL)
                try:
                    directory.rmdir()
                    break
                except OSError:  # EBUSY while the killed processes exit
                    time.sleep(0.05)


def _pids(directory: Path) -> list[int]:
    try:
        return [int(p) for p in (directory / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def _ours(pid: int) -> bool:
    """`pid` is this process or one of its descendants."""
    me = os.getpid()
    for _ in range(64):
        if pid == me:
            return True
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            pid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
        if pid <= 1:
            return False
    return False


def _own_paths() -> dict[str, str]:
    """This process's cgroup per hierarchy: {"": v2 path, "memory": ..., "pids": ...}."""
    paths: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for controller in controllers.split(",") if controllers else [""]:
                paths[controller] = path
    return paths


def _v2_mount() -> Path | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            fields = line.split(" - ", 1)
            if len(fields) == 2 and fields[1].split(" ")[0] == "cgroup2":
                return Path(fields[0].split(" ")[4])
    return None


def _writable(directory: Path) -> bool:
    return directory.is_dir() and os.access(directory, os.W_OK | os.X_OK)


def _enable_v2(parent: Path) -> str | None:
    """Make `parent` able to hold sandbox cgroups; None when it can, else why not."""
    enabled = set((parent / "cgroup.subtree_control").read_text().split())
    if set(_CONTROLLERS) <= enabled:
        return None
    available = set((parent / "cgroup.controllers").read_text().split())
    missing = set(_CONTROLLERS) - available
    if missing:
        return f"the {', '.join(sorted(missing))} controller is not delegated to {parent}"
    # "No internal processes": a cgroup with controllers enabled for its children holds no
    # process itself, so this worker's processes move to a leaf first (systemd's delegation
    # rules ask exactly this of a service with Delegate=yes).
    others = [pid for pid in _pids(parent) if not _ours(pid)]
    if others:
        return (
            f"{parent} also holds processes this worker did not start ({len(others)}, e.g. pid {others[0]}); "
            "give the worker a cgroup of its own (systemd Delegate=yes) or name one in agent.sandbox.cgroup_parent"
        )
    leaf = parent / "worker"
    leaf.mkdir(exist_ok=True)
    for pid in _pids(parent):
        with contextlib.suppress(OSError):  # a process that exited meanwhile
            (leaf / "cgroup.procs").write_text(str(pid))
    (parent / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in _CONTROLLERS))
    return None


def detect(parent_override: str = "") -> tuple[CgroupParent | None, str]:
    """Where this worker can make sandbox cgroups, or None and the reason. Cached per process
    (the v2 path moves the worker into a leaf once)."""
    global _detected
    if _detected is None:
        _detected = _detect(parent_override)
    return _detected


def _detect(parent_override: str) -> tuple[CgroupParent | None, str]:
    own = _own_paths()
    mount = _v2_mount()
    if mount is not None and "" in own:
        parent = Path(parent_override) if parent_override else mount / own[""].lstrip("/")
        if _writable(parent) and (parent / "cgroup.subtree_control").exists():
            try:
                why = _enable_v2(parent)
            except OSError as exc:
                why = f"cannot enable the memory and pids controllers in {parent}: {exc.strerror}"
            if why is None:
                return CgroupParent(2, (parent,)), ""
        else:
            why = f"{parent} is not a cgroup this worker may write (no delegated cgroup v2 subtree)"
    else:
        why = "no cgroup v2 mount"
    v1 = tuple(ROOT / c / own.get(c, "/").lstrip("/") for c in _CONTROLLERS)
    if all(_writable(d) and (d / "cgroup.procs").exists() for d in v1):
        return CgroupParent(1, v1), ""
    return None, why


def create(parent: CgroupParent, memory_mb: int, pids_max: int) -> Sandbox:
    """A fresh cgroup for one sandbox, with its limits written; raises OSError if the kernel
    refuses."""
    name = f"tamma-sandbox-{uuid.uuid4().hex[:12]}"
    limit = str(memory_mb * 1024 * 1024)
    if parent.version == 2:
        directory = parent.dirs[0] / name
        directory.mkdir()
        sandbox = Sandbox(2, (directory,), memory_mb)
        try:
            (directory / "memory.max").write_text(limit)
            with contextlib.suppress(OSError):  # no swap controller: nothing to cap
                (directory / "memory.swap.max").write_text("0")
            (directory / "pids.max").write_text(str(pids_max))
        except OSError:
            sandbox.remove()
            raise
        return sandbox
    memory, pids = parent.dirs[0] / name, parent.dirs[1] / name
    memory.mkdir()
    sandbox = Sandbox(1, (memory,), memory_mb)
    try:
        pids.mkdir()
        sandbox.dirs = (memory, pids)
        (memory / "memory.limit_in_bytes").write_text(limit)
        with contextlib.suppress(OSError):  # swap accounting off: memory alone is the limit
            (memory / "memory.memsw.limit_in_bytes").write_text(limit)
        (pids / "pids.max").write_text(str(pids_max))
    except OSError:
        sandbox.remove()
        raise
    return sandbox
