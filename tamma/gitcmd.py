"""A small async runner for the git command line, hardened against repository-controlled code.

Tamma drives the real `git` binary rather than a Python git library: the agent's workspaces,
the local platform and forge clones all need exactly git's own behaviour (receive-pack options,
updateInstead), and asyncio subprocesses keep activities cancellable and heartbeating.

Git runs code a repository (or whoever wrote into its .git) controls: hooks, fsmonitor,
external diff and textconv drivers, filters, credential helpers, insteadOf rewrites from the
user's ~/.gitconfig. Every call here reads no system or global config and carries overrides
through GIT_CONFIG_COUNT (which outrank a repository's own .git/config), so none of that runs.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path

from tamma.errors import GitError

# No prompts, no pagers, no user or system config leaking identities, hooks or rewrites.
_BASE_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_PAGER": "cat",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_ATTR_NOSYSTEM": "1",
    "GIT_NO_REPLACE_OBJECTS": "1",
    "LC_ALL": "C",
}

#: Overrides for every git call: no hooks, no fsmonitor daemon, no credential helper, no
#: submodule recursion, and only the transports Tamma uses (paths, http(s) to forges).
SAFE_CONFIG: tuple[tuple[str, str], ...] = (
    ("core.hooksPath", os.devnull),
    ("core.fsmonitor", "false"),
    ("core.sshCommand", "false"),
    ("credential.helper", ""),
    ("submodule.recurse", "false"),
    ("protocol.allow", "never"),
    ("protocol.file.allow", "always"),
    ("protocol.http.allow", "always"),
    ("protocol.https.allow", "always"),
)

#: The same overrides as `-c` flags, for a git that git itself spawns with a cleared
#: environment (the receive-pack of a local push does not inherit GIT_CONFIG_COUNT).
SAFE_FLAGS = " ".join(f"-c {key}={value}" for key, value in SAFE_CONFIG if value)
#: For clone/fetch/push over a local path: the git on the other side runs with these flags, so
#: the hooks of the repository being pushed into (pre-receive, update, post-receive...) stay off.
UPLOAD_PACK = f"--upload-pack=git {SAFE_FLAGS} upload-pack"
RECEIVE_PACK = f"--receive-pack=git {SAFE_FLAGS} receive-pack"


def git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a git call: a few host variables, the base settings, the safe
    config entries, then `extra` (whose own GIT_CONFIG_* entries are appended, not lost)."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "TMPDIR")}
    env.update(_BASE_ENV)
    entries = list(SAFE_CONFIG)
    rest = dict(extra or {})
    count = int(rest.pop("GIT_CONFIG_COUNT", "0") or 0)
    for i in range(count):
        entries.append((rest.pop(f"GIT_CONFIG_KEY_{i}"), rest.pop(f"GIT_CONFIG_VALUE_{i}")))
    env.update(rest)
    env["GIT_CONFIG_COUNT"] = str(len(entries))
    for i, (key, value) in enumerate(entries):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
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
