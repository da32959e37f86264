"""A small async runner for the git command line, hardened against repository-controlled code.

Tamma drives the real `git` binary rather than a Python git library: the agent's workspaces,
the local platform and forge clones all need exactly git's own behaviour (receive-pack options,
updateInstead), and asyncio subprocesses keep activities cancellable and heartbeating.

Git runs code that a repository (or whoever wrote into its .git, or into a nested repository in
its work tree) controls: hooks, fsmonitor, filters (clean/smudge/process), diff and merge drivers,
textconv, pagers, editors, credential helpers, ssh/askpass/gpg programs, trailer commands, and
`git status` descends into submodules and runs all of that there too. Every call here:

- reads no system or global config (GIT_CONFIG_NOSYSTEM, GIT_CONFIG_GLOBAL=/dev/null);
- carries fixed overrides through GIT_CONFIG_COUNT, which outrank a repository's own config
  (`SAFE_CONFIG`): no hooks, no fsmonitor, no submodule recursion or inspection, no pager,
  editor, askpass, ssh or attributes file of anyone else's choosing;
- lists the repository's effective config first (`git config --list --name-only`, which reads
  files, follows `include.path`, and runs nothing) and overrides every key that names a command
  (`neutralising`) with an empty value, so a filter, driver, textconv, helper or program defined
  there (or in a file it includes) is never run. git has no switch that turns all of these off
  at once, which is why this is written by hand.

Nested repositories and gitlinks in a workspace are refused before git sees them
(`tamma.agent.workspace`), so git never has another repository's config to read.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import subprocess
from collections.abc import Mapping
from pathlib import Path

from tamma.errors import GitError

# No prompts, no pagers, no editors, no user or system config leaking identities, hooks or rewrites.
_BASE_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_PAGER": "cat",
    "GIT_EDITOR": ":",
    "GIT_SEQUENCE_EDITOR": ":",
    "GIT_ASKPASS": "",
    "SSH_ASKPASS": "",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_ATTR_NOSYSTEM": "1",
    "GIT_NO_REPLACE_OBJECTS": "1",
    "GIT_PROTOCOL_FROM_USER": "0",
    "LC_ALL": "C",
}

#: Overrides for every git call: no hooks, no fsmonitor daemon, no credential helper, never into
#: submodules, no pager/editor/askpass/ssh/gpg, and only the transports Tamma uses (paths, http(s)).
SAFE_CONFIG: tuple[tuple[str, str], ...] = (
    ("core.hooksPath", os.devnull),
    ("core.fsmonitor", "false"),
    ("core.sshCommand", "false"),
    ("core.pager", "cat"),
    ("core.editor", ":"),
    ("sequence.editor", ":"),
    ("core.askPass", ""),
    ("core.attributesFile", os.devnull),
    ("core.alternateRefsCommand", ""),
    ("credential.helper", ""),
    ("diff.external", ""),
    ("diff.ignoreSubmodules", "all"),
    ("status.submoduleSummary", "false"),
    ("submodule.recurse", "false"),
    ("fetch.recurseSubmodules", "false"),
    ("push.recurseSubmodules", "no"),
    ("commit.gpgSign", "false"),
    ("tag.gpgSign", "false"),
    ("push.gpgSign", "false"),
    ("log.showSignature", "false"),
    ("gc.auto", "0"),
    ("maintenance.auto", "false"),
    ("protocol.allow", "never"),
    ("protocol.file.allow", "always"),
    ("protocol.http.allow", "always"),
    ("protocol.https.allow", "always"),
)

#: The last part of a config key that names a command git may run (lower-case, as git lists it),
#: and the value that turns it off. Matched on any section and subsection: `filter.<x>.clean`,
#: `diff.<x>.textconv`, `merge.<x>.driver` (an empty driver fails the merge: closed, not run),
#: `credential.<url>.helper`, `gpg.<fmt>.program`, `trailer.<t>.cmd`, `pager.<cmd>`, ...
_COMMAND_KEYS: dict[str, str] = {
    "clean": "",
    "smudge": "",
    "process": "",
    "required": "false",
    "textconv": "",
    "command": "",
    "cmd": "",
    "driver": "",
    "helper": "",
    "program": "",
    "defaultkeycommand": "",
    "sshcommand": "false",
    "askpass": "",
    "pager": "cat",
    "editor": ":",
    "alternaterefscommand": "",
    "packobjectshook": "",
    "receivepack": "git-receive-pack",
    "uploadpack": "git-upload-pack",
    "update": "none",
}


def neutralising(keys: list[str]) -> list[tuple[str, str]]:
    """Overrides for the config keys (as `git config --list --name-only` prints them) that name a
    command: each set to the value that runs nothing."""
    out: list[tuple[str, str]] = []
    for key in dict.fromkeys(keys):
        section, _, last = key.rpartition(".")
        if not section:
            continue
        head = section.split(".", 1)[0]
        if head == "pager":
            out.append((key, "false"))  # pager.<command>: a boolean or a pager command
        elif (
            last in _COMMAND_KEYS
            and (last != "required" or head == "filter")
            and (last != "update" or head == "submodule")
        ):
            out.append((key, _COMMAND_KEYS[last]))
    return out


def git_env(extra: Mapping[str, str] | None = None, overrides: list[tuple[str, str]] | None = None) -> dict[str, str]:
    """The environment for a git call: a few host variables, the base settings, the safe
    config entries and `overrides`, then `extra` (whose own GIT_CONFIG_* entries are appended,
    not lost)."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "TMPDIR")}
    env.update(_BASE_ENV)
    entries = [*SAFE_CONFIG, *(overrides or [])]
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


def _config_keys(out: bytes) -> list[str]:
    return [k for k in out.decode(errors="replace").split("\0") if k]


async def _neutralised(cwd: Path | str | None) -> list[tuple[str, str]]:
    """The overrides that switch off every command the repository at `cwd` configures."""
    if cwd is None:
        return []
    proc = await asyncio.create_subprocess_exec(
        "git", "config", "--list", "--name-only", "-z",
        cwd=str(cwd), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        stdin=asyncio.subprocess.DEVNULL, env=git_env(),
    )  # fmt: skip
    out, _ = await proc.communicate()
    return neutralising(_config_keys(out)) if proc.returncode == 0 else []


def safe_git_env_sync(cwd: Path | str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """`git_env` with the repository at `cwd` neutralised, for the few synchronous git calls."""
    done = subprocess.run(
        ["git", "config", "--list", "--name-only", "-z"],
        cwd=str(cwd), capture_output=True, stdin=subprocess.DEVNULL, env=git_env(), check=False,
    )  # fmt: skip
    keys = _config_keys(done.stdout) if done.returncode == 0 else []
    return git_env(extra, neutralising(keys))


#: The same overrides as `-c` flags, for a git that git itself spawns with a cleared
#: environment (the receive-pack of a local push does not inherit GIT_CONFIG_COUNT).
SAFE_FLAGS = " ".join(f"-c {key}={value}" for key, value in SAFE_CONFIG if value and " " not in value)
#: For clone/fetch/push over a local path: the git on the other side runs with these flags, so
#: the hooks of the repository being pushed into (pre-receive, update, post-receive...) stay off.
UPLOAD_PACK = f"--upload-pack=git {SAFE_FLAGS} upload-pack"
RECEIVE_PACK = f"--receive-pack=git {SAFE_FLAGS} receive-pack"


def receive_pack(url: str, *flags: str) -> str:
    """`--receive-pack=...` for a push to `url`. Into a local repository, receive-pack may
    update its work tree (updateInstead), which would run that repository's filters: its
    command-naming keys are neutralised as `-c` flags (shell-quoted: a key's subsection is
    free text)."""
    extra: list[tuple[str, str]] = []
    if os.path.isdir(url):
        done = subprocess.run(
            ["git", "config", "--list", "--name-only", "-z"],
            cwd=url, capture_output=True, stdin=subprocess.DEVNULL, env=git_env(), check=False,
        )  # fmt: skip
        extra = neutralising(_config_keys(done.stdout)) if done.returncode == 0 else []
    quoted = " ".join(f"-c {shlex.quote(f'{k}={v}')}" for k, v in extra)
    return f"--receive-pack=git {SAFE_FLAGS} {' '.join(flags)} {quoted} receive-pack"


async def git(
    *args: str,
    cwd: Path | str | None = None,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    strip: bool = True,
) -> str:
    """Run git and return its stdout (stripped unless `strip` is false: NUL-separated output
    keeps its leading spaces); raise GitError with stderr when it fails."""
    proc = await asyncio.create_subprocess_exec(
        "git",
        *args,
        cwd=str(cwd) if cwd is not None else None,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
        env=git_env(env, await _neutralised(cwd)),
    )
    out, err = await proc.communicate()
    if check and proc.returncode != 0:
        where = f" in {cwd}" if cwd else ""
        raise GitError(f"git {' '.join(args[:2])} failed{where}: {err.decode(errors='replace').strip()[:500]}")
    text = out.decode(errors="replace")
    return text.strip() if strip else text


async def git_ok(*args: str, cwd: Path | str | None = None) -> bool:
    """True when the git command exits 0 (for questions such as 'does this ref exist?')."""
    proc = await asyncio.create_subprocess_exec(
        "git",
        *args,
        cwd=str(cwd) if cwd is not None else None,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        stdin=asyncio.subprocess.DEVNULL,
        env=git_env(None, await _neutralised(cwd)),
    )
    return await proc.wait() == 0
