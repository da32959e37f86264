"""Run commands the agent (or the code it wrote) asks for, fenced in.

The fence: the workspace as cwd; wall-clock, CPU, memory and file-size limits (setrlimit in
the child); an environment built from an allowlist, so no secret Tamma holds can be inherited;
and no network when the host lets an unprivileged user namespace drop it (`unshare -rn`).
Containers would fence more, but no container engine can be assumed on a user's machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import resource
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel

_ENV_ALLOWLIST = ("PATH", "LANG", "LC_ALL", "TZ")
_OUTPUT_CAP = 1_000_000  # bytes kept from a command's output; the rest is dropped


class SandboxPolicy(BaseModel):
    timeout_s: float = 300.0
    cpu_s: int = 300
    memory_mb: int = 2048
    file_size_mb: int = 256
    network: bool = False


class CommandResult(BaseModel):
    exit_code: int
    output: str
    timed_out: bool = False
    duration_s: float = 0.0
    isolation: str = ""


@functools.cache
def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    try:
        done = subprocess.run(["unshare", "-rn", "true"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def isolation_summary(policy: SandboxPolicy) -> str:
    """One line for the terminal: which fences are actually up on this host."""
    limits = f"cpu {policy.cpu_s}s, memory {policy.memory_mb} MB, wall {policy.timeout_s:.0f}s"
    if policy.network:
        net = "network allowed (configured)"
    elif _unshare_works():
        net = "no network (unshare -rn)"
    else:
        net = "NETWORK NOT ISOLATED (unshare unavailable on this host)"
    return f"{net}; {limits}; secrets stripped from env"


def sandbox_env(home: Path, secrets: Sequence[str] = ()) -> dict[str, str]:
    env = {k: os.environ[k] for k in _ENV_ALLOWLIST if k in os.environ}
    env.setdefault("PATH", os.defpath)
    env.setdefault("LANG", "C.UTF-8")
    env.update(HOME=str(home), TMPDIR=str(home), PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1")
    # Belt and braces: nothing in the allowlist should hold a secret, but never pass one on.
    return {k: v for k, v in env.items() if not any(s and s in v for s in secrets)}


def _limits(policy: SandboxPolicy) -> None:  # runs in the child, between fork and exec
    os.setsid()
    mem = policy.memory_mb * 1024 * 1024
    fsize = policy.file_size_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_CPU, (policy.cpu_s, policy.cpu_s))
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))


async def run_sandboxed(
    argv: Sequence[str], cwd: Path, policy: SandboxPolicy, secrets: Sequence[str] = ()
) -> CommandResult:
    """Run `argv` in `cwd` under `policy`; the result holds at most ~1 MB of combined output."""
    prefix: list[str] = []
    if not policy.network and _unshare_works():
        prefix = ["unshare", "-rn"]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tamma-sandbox-home-") as home:
        proc = await asyncio.create_subprocess_exec(
            *prefix,
            *argv,
            cwd=str(cwd),
            env=sandbox_env(Path(home), secrets),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            preexec_fn=functools.partial(_limits, policy),
        )
        timed_out = False
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout=policy.timeout_s)
        except (TimeoutError, asyncio.CancelledError) as exc:
            timed_out = isinstance(exc, TimeoutError)
            _kill_group(proc.pid)
            out = b""
            await proc.wait()
            if not timed_out:
                raise
    text = out[-_OUTPUT_CAP:].decode(errors="replace")
    if timed_out:
        text += f"\n[tamma] killed after {policy.timeout_s:.0f}s wall-clock limit\n"
    return CommandResult(
        exit_code=proc.returncode if proc.returncode is not None else -1,
        output=text,
        timed_out=timed_out,
        duration_s=time.monotonic() - started,
        isolation=isolation_summary(policy),
    )


def _kill_group(pid: int) -> None:
    # The child called setsid(), so its pid is its process group: this ends its children too.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
