"""The repository's own environment: a setup step that installs its dependencies, inside the
sandbox, with network only to an allowlist of package registries, cached per repository and
lockfile hash so iterations do not reinstall.

Which setup runs: ``agent.setup_command``, else the repository's ``.tamma/setup.sh``, else one
detected from its files (a venv plus ``pip install`` for Python projects, ``npm ci`` for Node).
The environment lives outside the workspace (``<data dir>/envs``) and is shown to the sandbox at
one fixed path, read-write while it is set up and read-only while tests run, so a cached
environment works in every fresh clone.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import shlex
import shutil
import tempfile
import time
import tomllib
import uuid
from dataclasses import dataclass
from pathlib import Path

from tamma.agent.proxy import EgressProxy
from tamma.agent.sandbox import (
    ENV_DIR,
    PROXY_SOCKET,
    CommandResult,
    Mounts,
    SandboxPolicy,
    resolve_backend,
    run_sandboxed,
)
from tamma.redact import Redactor

READY = ".tamma-ready"
_FORWARD_PORT = 3128
_LOCKFILES = (
    "pyproject.toml",
    "setup.py",
    "setup.cfg",
    "requirements.txt",
    "requirements-dev.txt",
    "requirements-test.txt",
    "poetry.lock",
    "uv.lock",
    "Pipfile.lock",
    "package.json",
    "package-lock.json",
    ".tamma/setup.sh",
)


@dataclass(frozen=True)
class Environment:
    """What a test run needs to know about the repository's environment."""

    env_dir: Path | None  # None: the repository needs none (or setup is off)
    command: str = ""
    cached: bool = False
    result: CommandResult | None = None  # the setup run, when one ran

    @property
    def failed(self) -> bool:
        return self.result is not None and self.result.exit_code != 0


def setup_command(root: Path, configured: str | None) -> str | None:
    """The shell command that prepares `root`'s environment, or None when it needs none."""
    if configured is not None:
        return configured.strip() or None
    if (root / ".tamma" / "setup.sh").is_file():
        return "sh .tamma/setup.sh"
    venv = 'python3 -m venv "$VIRTUAL_ENV" && python -m pip install -q --disable-pip-version-check'
    if (root / "pyproject.toml").is_file() or (root / "setup.py").is_file():
        extras = _python_extras(root)
        return f"{venv} -e {shlex.quote('.' + (f'[{extras}]' if extras else ''))}"
    reqs = [f for f in ("requirements.txt", "requirements-dev.txt", "requirements-test.txt") if (root / f).is_file()]
    if reqs:
        return f"{venv} " + " ".join(f"-r {f}" for f in reqs)
    if (root / "package-lock.json").is_file():
        return 'npm ci --cache "$VIRTUAL_ENV/npm-cache" --no-audit --no-fund'
    return None


def _python_extras(root: Path) -> str:
    """The test extras a pyproject declares (test, tests, testing, dev), comma-joined."""
    try:
        data = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return ""
    declared = data.get("project", {}).get("optional-dependencies", {})
    return ",".join(e for e in ("test", "tests", "testing", "dev") if e in declared)


def environment_key(root: Path, repo_key: str, command: str, policy: SandboxPolicy, backend: str) -> str:
    h = hashlib.sha256()
    for part in (repo_key, command, backend, policy.image if backend == "container" else ""):
        h.update(part.encode() + b"\0")
    for name in _LOCKFILES:
        f = root / name
        if f.is_file():
            h.update(name.encode() + b"\0" + f.read_bytes() + b"\0")
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", repo_key).strip("_")[-40:]
    return f"{slug}-{h.hexdigest()[:16]}"


async def prepare_environment(
    root: Path,
    repo_key: str,
    configured: str | None,
    envs_dir: Path,
    policy: SandboxPolicy,
    redactor: Redactor,
    allow_hosts: list[str],
) -> Environment:
    """Reuse the cached environment for this repository and lockfiles, or set one up."""
    command = setup_command(root, configured)
    if command is None:
        return Environment(env_dir=None)
    backend = resolve_backend(policy)
    final = envs_dir / environment_key(root, repo_key, command, policy, backend)
    if (final / READY).exists():
        return Environment(env_dir=final, command=command, cached=True)
    envs_dir.mkdir(parents=True, exist_ok=True)
    # Isolating backends show the environment at one fixed path, so it may be built aside and
    # renamed into place (two workers racing both succeed; one result is kept). Without a
    # sandbox the venv's own paths are real, so it is built where it stays.
    building = final if backend == "none" else envs_dir / f".build-{uuid.uuid4().hex[:12]}"
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    result = await _run_setup(root, command, building, backend, policy, redactor, allow_hosts)
    if result.exit_code != 0:
        shutil.rmtree(building, ignore_errors=True)
        return Environment(env_dir=None, command=command, result=result)
    (building / READY).write_text(command + "\n", encoding="utf-8")
    if building != final:
        with contextlib.suppress(OSError):
            building.rename(final)
        shutil.rmtree(building, ignore_errors=True)
    return Environment(env_dir=final, command=command, result=result)


async def _run_setup(
    root: Path,
    command: str,
    env_dir: Path,
    backend: str,
    policy: SandboxPolicy,
    redactor: Redactor,
    allow_hosts: list[str],
) -> CommandResult:
    forward = Path(__file__).with_name("sandbox_forward.py")
    # AF_UNIX paths are short (108 bytes): the socket lives in its own short temp dir.
    sock_dir = Path(tempfile.mkdtemp(prefix="tamma-px-", dir="/tmp"))
    sock_dir.chmod(0o755)
    socket_path = sock_dir / "proxy.sock"
    inside_sock, inside_fwd = (
        (PROXY_SOCKET, "/tamma/forward.py") if backend != "none" else (str(socket_path), str(forward))
    )
    ready = "/tmp/.tamma-forward-ready"
    proxy_url = f"http://127.0.0.1:{_FORWARD_PORT}"
    wrapped = (
        f"python3 {inside_fwd} {_FORWARD_PORT} {inside_sock} {ready} & fw=$!; "
        f"i=0; while [ ! -e {ready} ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; "
        f"( {command} ); rc=$?; kill $fw 2>/dev/null; exit $rc"
    )
    env = {
        "VIRTUAL_ENV": ENV_DIR if backend != "none" else str(env_dir),
        "HTTP_PROXY": proxy_url,
        "HTTPS_PROXY": proxy_url,
        "http_proxy": proxy_url,
        "https_proxy": proxy_url,
        "NO_PROXY": "",
        "npm_config_proxy": proxy_url,
        "npm_config_https_proxy": proxy_url,
    }
    mounts = Mounts(
        workspace=root,
        env_dir=env_dir,
        env_writable=True,
        proxy_socket=socket_path,
        files=((forward, "/tamma/forward.py"),) if backend != "none" else (),
        hidden=tuple(policy.hide_paths),
    )
    try:
        async with EgressProxy(socket_path, allow_hosts) as proxy:
            result = await run_sandboxed(
                wrapped, mounts, policy.model_copy(update={"network": False}), redactor, extra_env=env
            )
    finally:
        shutil.rmtree(sock_dir, ignore_errors=True)
    note = ""
    if proxy.refused:
        hosts = ", ".join(sorted(set(proxy.refused)))
        note = f"\n[tamma] setup egress refused (not in agent.setup_allow_hosts): {hosts}\n"
    header = f"[tamma] setup: {command}\n"
    return result.model_copy(update={"output": header + result.output + note})


async def run_in_environment(
    command: str,
    root: Path,
    environment: Environment,
    policy: SandboxPolicy,
    redactor: Redactor,
) -> CommandResult:
    """Run the tests (or any command) with the repository's environment mounted read-only."""
    if environment.failed:
        assert environment.result is not None
        return environment.result.model_copy(
            update={"output": environment.result.output + "\n[tamma] setup failed: tests were not run\n"}
        )
    mounts = Mounts(workspace=root, env_dir=environment.env_dir, hidden=tuple(policy.hide_paths))
    return await run_sandboxed(command, mounts, policy, redactor)


async def sweep_builds(envs_dir: Path, older_than_s: float = 3600) -> None:
    """Remove half-built environments that a killed worker left behind."""

    def sweep() -> None:
        if not envs_dir.is_dir():
            return
        for p in envs_dir.glob(".build-*"):
            with contextlib.suppress(OSError):
                if time.time() - p.stat().st_mtime > older_than_s:
                    shutil.rmtree(p, ignore_errors=True)

    await asyncio.to_thread(sweep)
