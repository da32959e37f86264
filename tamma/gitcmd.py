"""A small async runner for the git command line.

Tamma drives the real `git` binary rather than a Python git library: the agent's workspaces,
the local platform and forge clones all need exactly git's own behaviour (hooks, config,
receive-pack options), and asyncio subprocesses keep activities cancellable and heartbeating.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path

from tamma.errors import GitError

# No prompts, no pagers, no user or system config leaking identities or hooks into our repos.
_BASE_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_PAGER": "cat",
    "GIT_CONFIG_NOSYSTEM": "1",
    "LC_ALL": "C",
}


def git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "TMPDIR", "SSH_AUTH_SOCK")}
    env.update(_BASE_ENV)
    if extra:
        env.update(extra)
    return env


async def git(
    *args: str,
    cwd: Path | str | None = None,
    check: bool = True,
    env: Mapping[str, str] | None = None,
) -> str:
    """Run git and return its stripped stdout; raise GitError with stderr when it fails."""
    proc = await asyncio.create_subprocess_exec(
        "git",
        *args,
        cwd=str(cwd) if cwd is not None else None,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
        env=git_env(env),
    )
    out, err = await proc.communicate()
    if check and proc.returncode != 0:
        where = f" in {cwd}" if cwd else ""
        raise GitError(f"git {' '.join(args[:2])} failed{where}: {err.decode(errors='replace').strip()[:500]}")
    return out.decode(errors="replace").strip()


async def git_ok(*args: str, cwd: Path | str | None = None) -> bool:
    """True when the git command exits 0 (for questions such as 'does this ref exist?')."""
    proc = await asyncio.create_subprocess_exec(
        "git",
        *args,
        cwd=str(cwd) if cwd is not None else None,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        stdin=asyncio.subprocess.DEVNULL,
        env=git_env(),
    )
    return await proc.wait() == 0
