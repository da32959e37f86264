"""The repository's setup step: inside the sandbox, network only to allowlisted registries
through Tamma's proxy, cached per lockfile; the tests themselves run with no network."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from tamma.agent.environment import generated_files, prepare_environment, run_in_environment, setup_command
from tamma.agent.proxy import EgressProxy
from tamma.agent.sandbox import SandboxPolicy, probe_bwrap
from tamma.config import DEFAULT_SETUP_HOSTS
from tamma.redact import Redactor
from tests.conftest import sandbox_backends, sandbox_policy

pytestmark = pytest.mark.skipif(not probe_bwrap()[0], reason=f"bwrap unavailable: {probe_bwrap()[1]}")

# A test that imports a PyPI package installed by setup, and tries to reach another host.
TEST_FILE = """\
import unittest, urllib.request
import iniconfig


class T(unittest.TestCase):
    def test_dependency_is_installed(self):
        self.assertTrue(iniconfig.__file__.startswith("/tamma/env/"))

    def test_network_is_closed(self):
        try:
            urllib.request.urlopen("https://example.com", timeout=5)
        except OSError as exc:
            print("NETWORK REFUSED", exc)
        else:
            self.fail("the test reached the network")
"""


def sample_repo(path: Path, requirement: str = "iniconfig==2.0.0") -> Path:
    path.mkdir(parents=True)
    (path / "requirements.txt").write_text(requirement + "\n")
    (path / "test_dep.py").write_text(TEST_FILE)
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    return path


@pytest.mark.slow
async def test_setup_installs_through_the_proxy_and_tests_run_offline(tmp_path: Path) -> None:
    repo = sample_repo(tmp_path / "repo")
    envs, policy, redactor = tmp_path / "envs", SandboxPolicy(timeout_s=240), Redactor()
    env = await prepare_environment(repo, "local:sample", None, envs, policy, redactor, DEFAULT_SETUP_HOSTS)
    assert env.result is not None and env.result.exit_code == 0, env.result.output
    assert env.env_dir is not None and not env.cached
    result = await run_in_environment("python3 -m unittest -v", repo, env, policy, redactor)
    assert result.exit_code == 0, result.output
    assert "NETWORK REFUSED" in result.output
    # The same lockfiles again (a new iteration's fresh clone): reused, nothing re-run.
    again = await prepare_environment(repo, "local:sample", None, envs, policy, redactor, DEFAULT_SETUP_HOSTS)
    assert again.cached and again.env_dir == env.env_dir and again.result is None
    # A changed lockfile is a new environment.
    (repo / "requirements.txt").write_text("iniconfig==2.0.0\n# pinned\n")
    changed = await prepare_environment(repo, "local:sample", None, envs, policy, redactor, DEFAULT_SETUP_HOSTS)
    assert changed.env_dir != env.env_dir


@pytest.mark.parametrize("backend", sandbox_backends())
async def test_setup_reaches_only_allowlisted_hosts(tmp_path: Path, backend: str) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    srv.setblocking(False)
    port = srv.getsockname()[1]
    fetch = "python3 -c \"import urllib.request as u; u.urlopen('{url}', timeout=5)\""
    script = (
        f"{fetch.format(url=f'http://127.0.0.1:{port}/x')}; echo direct=$?; "
        f"{fetch.format(url='https://evil.example/x')}; echo evil=$?"
    )
    env = await prepare_environment(
        repo,
        "local:x",
        script,
        tmp_path / "envs",
        sandbox_policy(backend, timeout_s=60),
        Redactor(),
        DEFAULT_SETUP_HOSTS,
    )
    assert env.result is not None
    out = env.result.output
    assert "direct=0" not in out and "evil=0" not in out
    assert "403" in out  # the proxy's refusal reached the package manager
    assert "evil.example:443" in out and "127.0.0.1" in out  # and Tamma says what was refused
    with pytest.raises(BlockingIOError):
        srv.accept()  # nothing connected to the local listener
    srv.close()


async def test_failed_setup_is_reported_and_nothing_is_cached(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    envs = tmp_path / "envs"
    env = await prepare_environment(
        repo, "local:x", "echo broken deps; exit 3", envs, SandboxPolicy(timeout_s=30), Redactor(), []
    )
    assert env.failed and env.env_dir is None
    result = await run_in_environment("true", repo, env, SandboxPolicy(), Redactor())
    assert result.exit_code == 3 and "broken deps" in result.output and "setup failed" in result.output
    assert not any(envs.iterdir())


VERSIONED = {
    "pyproject.toml": '[project]\nname = "pkg"\ndynamic = ["version"]\n'
    '[tool.setuptools_scm]\nwrite_to = "src/pkg/_version.py"\n',
    "src/pkg/__init__.py": "from ._version import version as __version__\n",
    "test_version.py": "import sys\nsys.path.insert(0, 'src')\nimport pkg\nprint('VERSION', pkg.__version__)\n",
}
# what setuptools-scm does at install time: the version file, written into the tree setup runs in
# (and, playing the hostile repository, a file planted where the environment keeps such files)
WRITES_VERSION = (
    "printf \"version = '1.2.3'\\n\" > src/pkg/_version.py"
    ' && mkdir -p "$VIRTUAL_ENV/.tamma-generated/.git" && echo planted > "$VIRTUAL_ENV/.tamma-generated/.git/config"'
)


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


@pytest.mark.parametrize("backend", sandbox_backends())
async def test_a_version_file_the_install_writes_is_there_for_every_run_and_gone_after(
    tmp_path: Path, backend: str
) -> None:
    source, workspace = _tree(tmp_path / "source", VERSIONED), _tree(tmp_path / "work", VERSIONED)
    policy, redactor = sandbox_policy(backend, timeout_s=60), Redactor()
    env = await prepare_environment(source, "local:v", WRITES_VERSION, tmp_path / "envs", policy, redactor, [])
    assert env.result is not None and env.result.exit_code == 0, env.result.output
    assert env.generated == ("src/pkg/_version.py",)
    result = await run_in_environment("python3 test_version.py", workspace, env, policy, redactor)
    assert result.exit_code == 0 and "VERSION 1.2.3" in result.output, result.output
    assert not (workspace / "src/pkg/_version.py").exists()  # taken away: never committed by mistake
    assert not (workspace / ".git").exists()  # what setup planted beside it was never placed
    # reused from the cache (no setup ran): the same file, from the environment
    again = await prepare_environment(source, "local:v", WRITES_VERSION, tmp_path / "envs", policy, redactor, [])
    assert again.cached and again.generated == env.generated
    result = await run_in_environment("python3 test_version.py", workspace, again, policy, redactor)
    assert "VERSION 1.2.3" in result.output, result.output
    # a version file the change itself provides is left as it is
    (workspace / "src/pkg/_version.py").write_text("version = '9.9'\n")
    result = await run_in_environment("python3 test_version.py", workspace, again, policy, redactor)
    assert "VERSION 9.9" in result.output and (workspace / "src/pkg/_version.py").read_text() == "version = '9.9'\n"


async def test_a_generated_file_is_never_written_through_a_link_or_outside_the_tree(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    source, workspace = _tree(tmp_path / "source", VERSIONED), _tree(tmp_path / "work", VERSIONED)
    policy, redactor = sandbox_policy("bwrap", timeout_s=60), Redactor()
    env = await prepare_environment(source, "local:l", WRITES_VERSION, tmp_path / "envs", policy, redactor, [])
    # the workspace's package folder swapped for a link (by code a run executed): nothing lands there
    shutil.rmtree(workspace / "src/pkg")
    (workspace / "src/pkg").symlink_to(outside)
    await run_in_environment("true", workspace, env, policy, redactor)
    assert list(outside.iterdir()) == []
    hostile = {
        "pyproject.toml": '[tool.setuptools_scm]\nwrite_to = "../../outside/x.py"\nversion_file = ".git/config"\n'
        '[tool.hatch.build.hooks.vcs]\nversion-file = "/etc/passwd"\n'
        '[tool.pdm.version]\nwrite_to = "v.py"\n[tool.pdm.build]\npackage-dir = "../up"\n'
    }
    assert generated_files(_tree(tmp_path / "hostile", hostile)) == []
    pdm = {
        "pyproject.toml": '[tool.pdm.version]\nwrite_to = "pkg/__version__.py"\n[tool.pdm.build]\npackage-dir = "src"\n'
    }
    assert generated_files(_tree(tmp_path / "pdm", pdm)) == ["src/pkg/__version__.py"]


def test_setup_command_detection(tmp_path: Path) -> None:
    assert setup_command(tmp_path, None) is None
    assert setup_command(tmp_path, "make deps") == "make deps"
    assert setup_command(tmp_path, "") is None  # explicitly off
    (tmp_path / "requirements.txt").write_text("x\n")
    assert "-r requirements.txt" in (setup_command(tmp_path, None) or "")
    (tmp_path / "pyproject.toml").write_text('[project]\nname="x"\n[project.optional-dependencies]\ntest=["pytest"]\n')
    assert "-e '.[test]'" in (setup_command(tmp_path, None) or "")
    (tmp_path / ".tamma").mkdir()
    (tmp_path / ".tamma" / "setup.sh").write_text("echo hi\n")
    assert setup_command(tmp_path, None) == "sh .tamma/setup.sh"


async def test_proxy_refuses_unlisted_hosts_and_odd_ports(tmp_path: Path) -> None:
    sock = tmp_path / "p.sock"
    async with EgressProxy(sock, ["pypi.org", "*.pythonhosted.org"], upstream="") as proxy:
        assert proxy.permits("files.pythonhosted.org") and proxy.permits("PyPI.org.")
        assert not proxy.permits("pypi.org.evil.com") and not proxy.permits("pythonhosted.org.evil")
        assert not proxy.permits("pypi.org", 8081) and proxy.permits("pypi.org", 80)
        for request in (b"CONNECT evil.com:443 HTTP/1.1\r\n\r\n", b"CONNECT pypi.org:22 HTTP/1.1\r\n\r\n"):
            reader, writer = await asyncio.open_unix_connection(str(sock))
            writer.write(request)
            answer = await reader.read(1000)
            writer.close()
            assert answer.startswith(b"HTTP/1.1 403"), answer
    assert proxy.refused == ["evil.com:443", "pypi.org:22"]
    # `host:port` allows that port alone, and that host alone
    async with EgressProxy(tmp_path / "q.sock", ["nexus.corp.test:8081"], upstream="") as ported:
        assert ported.permits("nexus.corp.test", 8081) and not ported.permits("nexus.corp.test", 443)
        assert not ported.permits("evil.test", 8081) and not ported.permits("nexus.corp.test", 8082)


async def test_the_upstream_proxy_is_bypassed_for_what_no_proxy_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Behind a company proxy, a registry inside the network (NO_PROXY) is reached directly, as
    every other client on the worker reaches it; the rest goes through the upstream proxy."""
    from tests.standins.http import Reply, serve

    async def fetch(sock: Path, url: str) -> bytes:
        reader, writer = await asyncio.open_unix_connection(str(sock))
        writer.write(f"GET {url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        # to the end of the answer: one read may return the head before the body arrives
        answer = await asyncio.wait_for(reader.read(), 30)
        writer.close()
        return answer

    with serve(lambda req: Reply(200, b"from the registry")) as registry:
        port = int(registry.url.rsplit(":", 1)[1])
        allow = [f"127.0.0.1:{port}"]
        dead_upstream = "http://127.0.0.1:9"  # nothing listens: going through it fails
        monkeypatch.setenv("no_proxy", "127.0.0.1")
        async with EgressProxy(tmp_path / "a.sock", allow, upstream=dead_upstream):
            assert b"from the registry" in await fetch(tmp_path / "a.sock", f"{registry.url}/simple/")
        monkeypatch.delenv("no_proxy")
        monkeypatch.delenv("NO_PROXY", raising=False)
        async with EgressProxy(tmp_path / "b.sock", allow, upstream=dead_upstream):
            assert b"from the registry" not in await fetch(tmp_path / "b.sock", f"{registry.url}/simple/")


@pytest.mark.parametrize("backend", sandbox_backends())
async def test_setup_secrets_reach_setup_only_never_a_command_line_or_the_tests(tmp_path: Path, backend: str) -> None:
    import asyncio

    from tamma.agent.environment import _url_hosts

    token, index = "npm-tok-5f1e9a77", "https://ci:idx-pass-31c0@pypi.corp.example/simple"
    repo = tmp_path / "repo"
    repo.mkdir()
    setup = (
        'echo "token length ${#NPM_TOKEN}"; case "$PIP_INDEX_URL" in *pypi.corp.example*) echo index-set;; esac; '
        'echo "leak: $NPM_TOKEN"; sleep 2; mkdir -p "$VIRTUAL_ENV/bin"'
    )
    policy = sandbox_policy(backend, timeout_s=60)
    seen: list[str] = []

    async def watch() -> None:  # every command line on the host while setup runs
        for _ in range(30):
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    seen.append(cmdline.read_bytes().decode(errors="replace"))
                except OSError:
                    pass
            await asyncio.sleep(0.1)

    watcher = asyncio.create_task(watch())
    env = await prepare_environment(
        repo, "local:s", setup, tmp_path / "envs", policy, Redactor([token, index]), [],
        secrets={"NPM_TOKEN": token, "PIP_INDEX_URL": index},
    )  # fmt: skip
    await watcher
    assert env.result is not None and env.result.exit_code == 0, env.result.output
    out = env.result.output
    assert f"token length {len(token)}" in out and "index-set" in out
    assert token not in out and "leak: [REDACTED]" in out
    assert seen and not any(token in c or "idx-pass" in c for c in seen)
    assert _url_hosts([index, "not a url", token]) == ["pypi.corp.example"]
    # the tests of that environment never see them
    result = await run_in_environment("env", repo, env, policy, Redactor())
    assert "NPM_TOKEN" not in result.output and "PIP_INDEX_URL" not in result.output and token not in result.output


@pytest.mark.parametrize(
    "name", ["PATH", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "npm_config_https_proxy", "LD_PRELOAD", "1BAD", "A-B"]
)
def test_a_setup_secret_may_not_name_a_variable_that_steers_the_sandbox(name: str) -> None:
    from pydantic import ValidationError

    from tamma.config.schema import AgentSettings

    with pytest.raises(ValidationError, match="cannot be a setup variable"):
        AgentSettings(setup_secrets={name: "x"})


@pytest.mark.parametrize("name", ["GOPROXY", "GONOPROXY", "GONOSUMDB", "PIP_INDEX_URL", "NPM_TOKEN"])
def test_a_registry_s_own_variables_may_be_setup_secrets(name: str) -> None:
    from tamma.config.schema import AgentSettings

    assert name in AgentSettings(setup_secrets={name: "https://modules.example.com"}).setup_secrets



@pytest.mark.slow
async def test_a_lock_that_cannot_install_here_falls_back_to_the_plain_install_and_says_so(tmp_path: Path) -> None:
    """A poetry.lock made elsewhere pins a version this machine's index does not have (or not for
    this Python): setup still succeeds, unpinned, and its output says the lock was not honoured.
    A lock that can install is honoured (the real-repository case `poetry-lock` depends on it)."""
    repo = sample_repo(tmp_path / "repo", "iniconfig")
    (repo / "poetry.lock").write_text('[[package]]\nname = "iniconfig"\nversion = "0.0.0.1"\n')
    envs, policy, redactor = tmp_path / "envs", SandboxPolicy(timeout_s=240), Redactor()
    env = await prepare_environment(repo, "local:lock", None, envs, policy, redactor, DEFAULT_SETUP_HOSTS)
    assert env.result is not None and env.result.exit_code == 0, env.result.output
    said = "tamma: the versions poetry.lock pins do not install here; installing without them"
    assert said in env.result.output.splitlines(), env.result.output  # printed (the command also names it)
    result = await run_in_environment("python3 -m unittest -v", repo, env, policy, redactor)
    assert result.exit_code == 0, result.output  # iniconfig is there, unpinned

    held = sample_repo(tmp_path / "held", "iniconfig")
    (held / "poetry.lock").write_text('[[package]]\nname = "iniconfig"\nversion = "1.1.1"\n')
    env = await prepare_environment(held, "local:held", None, envs, policy, redactor, DEFAULT_SETUP_HOSTS)
    assert env.result is not None and env.result.exit_code == 0, env.result.output
    assert said not in env.result.output.splitlines(), env.result.output
    version = await run_in_environment(
        "python3 -c 'import importlib.metadata as m; print(\"iniconfig\", m.version(\"iniconfig\"))'",
        held, env, policy, redactor,
    )  # fmt: skip
    assert "iniconfig 1.1.1" in version.output, version.output


async def test_a_hanging_test_is_named_when_the_run_is_killed(tmp_path: Path) -> None:
    """Through the real sandbox: the run's environment makes pytest dump where it is stuck, so
    the run the wall-clock limit kills says which test hung."""
    from tamma.agent.environment import Environment
    from tamma.agent.results import hung_test

    if subprocess.run(["python3", "-c", "import pytest"], capture_output=True).returncode != 0:
        pytest.skip("the sandbox's python3 (the system's) has no pytest here")
    repo = tmp_path / "repo"
    (repo / "tests").mkdir(parents=True)
    (repo / "tests" / "test_slow.py").write_text(
        "import time\n\ndef test_quick():\n    pass\n\ndef test_waits_for_ever():\n    time.sleep(10_000)\n"
    )
    policy = SandboxPolicy(timeout_s=12)
    result = await run_in_environment(
        "python3 -m pytest -q -p no:cacheprovider tests", repo, Environment(None), policy, Redactor()
    )
    assert result.timed_out, result.output
    assert hung_test(result.output) == "tests/test_slow.py::test_waits_for_ever (line 7)", result.output


async def test_a_project_versioned_from_git_tags_is_installed_as_its_newest_release_tag(tmp_path: Path) -> None:
    """The export setup runs in has no .git; the version setuptools-scm and the like would read
    from the tags is given to them (0.0.0 clashed with a runner that needs the project itself:
    pytest requires pluggy>=1.5). Through the real activity, workspace and sandbox."""
    from tamma.agent.workspace import Workspace
    from tamma.config import Settings
    from tamma.models import RepoRef
    from tamma.runtime.wiring import build_activities

    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]

    def commit(name: str, *tags: str) -> None:
        (repo / name).write_text(name)
        subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
        subprocess.run([*git, "commit", "-qm", name], cwd=repo, check=True)
        for tag in tags:
            subprocess.run([*git, "tag", tag], cwd=repo, check=True)

    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    commit("a", "v1.4.2")
    commit("b", "nightly", "docs-2024")  # newer tags that are not releases
    ws = await Workspace.clone(str(repo), "main", tmp_path / "work")
    head = await ws.head()
    assert await ws.version_tag(head) == "1.4.2"
    commit("c", "release-2.0rc1")
    ws = await Workspace.clone(str(repo), "main", tmp_path / "work")  # each activity clones afresh
    assert await ws.version_tag(await ws.head()) == "2.0rc1"

    settings = Settings(
        data_dir=tmp_path / "data",
        agent={
            "setup_command": 'printf "%s" "$SETUPTOOLS_SCM_PRETEND_VERSION $PDM_BUILD_SCM_VERSION" > "$VIRTUAL_ENV/v"',
            "test_command": "true",
            "sandbox": {"timeout_s": 60},
        },
    )
    acts = build_activities(settings)
    prepared = await acts.prepare_tests(RepoRef(platform="local", locator=str(repo)), ws, "main")
    env_dir = prepared.environment.env_dir
    assert env_dir is not None and (env_dir / "v").read_text() == "2.0rc1 2.0rc1"

    untagged = tmp_path / "untagged"
    subprocess.run(["git", "init", "-q", "-b", "main", str(untagged)], check=True)
    (untagged / "x").write_text("x")
    subprocess.run([*git, "add", "-A"], cwd=untagged, check=True)
    subprocess.run([*git, "commit", "-qm", "x"], cwd=untagged, check=True)
    plain = await Workspace.clone(str(untagged), "main", tmp_path / "work2")
    assert await plain.version_tag(await plain.head()) is None  # the placeholder, 0.0.0, then
