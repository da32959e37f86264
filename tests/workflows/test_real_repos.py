"""Real repositories, end to end: published code (PyPI sdists) and small projects in the shapes
users have (Node with mocha and with node's own runner, a Rust crate, a Go module, C with a Makefile, C whose
only test instructions are in AGENTS.md, a library without tests, a project whose runner is not
installed). Each runs through the real worker, sandbox and git with zero configuration and a
scripted model applying a known fix: the base commit's run must see the bug, the gate must pass
on the fix and refuse a wrong one, a repository with no tests never merges on its own, and a
broken environment is reported as one. The repositories and their licences: tests/fixtures/repos/README.md.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from tamma.config import Settings
from tamma.models import IssueTaskInput, StepName, TaskState, TaskStatus
from tamma.platforms.local import LocalPlatform, local_repo_ref
from tamma.runtime.tasks import TaskService
from tamma.runtime.wiring import build_activities
from tests.conftest import running_worker
from tests.standins.cargo_registry import cargo_registry
from tests.standins.goproxy import goproxy
from tests.transcripts import transcript_doc
from tests.workflows.test_issue_workflow import wait_for_status

FIXTURES = Path(__file__).parents[1] / "fixtures" / "repos"


@dataclass
class Case:
    title: str
    path: str  # the file the fix edits
    old: str
    new: str  # the right fix
    wrong: str  # a "fix" the gate must refuse (it breaks something else, or fixes nothing)
    command: str  # what Tamma detects and runs
    failing: str  # part of the id of a test that fails on the base commit
    needs: list[str] = field(default_factory=list)  # programs the case needs on this machine
    shape: str = ""
    # setup variables this machine needs, not the repository: the npm registry reachable here
    # serves package metadata without npm's signatures, which corepack checks before it runs
    # pnpm or yarn (COREPACK_INTEGRITY_KEYS=0 turns that check off; the public registry signs)
    setup_secrets: dict[str, str] = field(default_factory=dict)
    fixture: str = ""  # the folder, when another case's repository is reused with `plant` edits
    plant: list[dict[str, str]] = field(default_factory=list)  # {path, old, new}: the repository made different


#: one case per repository, shared with bench/agent_eval.py
CASES: dict[str, Case] = {
    name: Case(**fields) for name, fields in json.loads((FIXTURES / "cases.json").read_text()).items()
}


def make_repo(name: str, dest: Path) -> Path:
    case = CASES.get(name)
    shutil.copytree(FIXTURES / (case.fixture if case and case.fixture else name), dest)
    for edit in case.plant if case else []:
        target = dest / edit["path"]
        text = target.read_text()
        assert text.count(edit["old"]) == 1, f"{name}: plant {edit['path']}: {edit['old']!r} is not there once"
        target.write_text(text.replace(edit["old"], edit["new"]))
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base"],
    ):
        subprocess.run(["git", *args], cwd=dest, check=True, capture_output=True)
    return dest


def script(
    tmp_path: Path, path: str, edits: list[tuple[str, str]], name: str = "script", expect: list[str] | None = None
) -> Path:
    """Analysis and plan (low risk, naming `path`), then one coding session: the edits, the
    tests, done. The session's first request must contain `expect` (the replay stops otherwise)."""
    calls: list[tuple[str, dict[str, Any]]] = [
        ("edit_file", {"path": path, "old_text": old, "new_text": new}) for old, new in edits
    ]
    calls.append(("run_tests", {}))
    exchanges: list[dict[str, Any]] = [
        {
            "purpose": "analysis",
            "response": {"summary": "A one-line bug.", "complexity": "low", "risk": "low", "affected_areas": [path]},
        },
        {
            "purpose": "plan",
            "response": {
                "summary": "Fix the line.",
                "steps": [{"title": "Fix it", "detail": "one line"}, {"title": "Run the tests", "detail": ""}],
                "files": [path],
                "estimate_hours": 0.25,
                "test_strategy": "The existing tests cover it.",
            },
        },
    ]
    exchanges += [
        {
            "purpose": "code",
            "session": 1,
            "response": {"stop_reason": "tool_use", "tool_calls": [{"id": f"c{i}", "name": tool, "input": args}]},
        }
        for i, (tool, args) in enumerate(calls)
    ]
    if expect:
        exchanges[2]["expect"] = {"prompt_contains": expect}
    exchanges.append({"purpose": "code", "session": 1, "response": {"text": "Done.", "stop_reason": "end_turn"}})
    out = tmp_path / f"{name}.json"
    out.write_text(transcript_doc(exchanges))
    return out


def configured(settings: Settings, agent: dict[str, Any] | None = None, **workflow: Any) -> Settings:
    data = settings.model_dump()
    data["agent"]["sandbox"]["timeout_s"] = 300
    data["agent"] |= agent or {}
    data["workflow"] |= {"max_fix_attempts": 0, **workflow}
    return Settings.model_validate(data)


async def run(client: Client, task_queue: str, s: Settings, repo: Path, title: str, transcript: Path) -> TaskState:
    platform = LocalPlatform(local_repo_ref(repo), s.data_dir)
    issue = platform.create_issue(title, "Found in production; the tests show it.", author="reporter")
    service = TaskService(client, task_queue)
    opts = s.task_options(transcript=str(transcript), retry_initial_s=0.1)
    async with running_worker(client, task_queue, build_activities(s), s):
        wid, _ = await service.start(IssueTaskInput(repo=platform.repo, issue_number=issue.number, options=opts))
        return await service.result(wid)


def file_on_main(repo: Path, path: str) -> str:
    return subprocess.run(["git", "show", f"main:{path}"], cwd=repo, capture_output=True, text=True).stdout


@pytest.mark.parametrize("name", sorted(CASES))
async def test_zero_configuration_sees_the_bug_merges_the_fix_and_refuses_a_wrong_one(
    client: Client, task_queue: str, settings: Settings, tmp_path: Path, name: str
) -> None:
    case = CASES[name]
    missing = [
        tool for tool in case.needs if shutil.which(tool) is None and not (Path.home() / ".cargo/bin" / tool).exists()
    ]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed here")
    s = configured(settings, agent={"setup_secrets": case.setup_secrets})
    # the right fix: the base commit's run saw the bug, the gate passed on the fix, it merged
    repo = make_repo(name, tmp_path / "repo")
    # the agent is told the test command and what already fails on the base commit, and is given
    # the repository's guidance files
    expect = [f"The test command is `{case.command}`", "Already failing there", case.failing]
    if name == "agents-md":
        expect.append("Working on strutil")
    fix = script(tmp_path, case.path, [(case.old, case.new)], expect=expect)
    state = await run(client, task_queue, s, repo, case.title, fix)
    assert state.status == TaskStatus.MERGED, (state.error, [t.summary for t in state.tests])
    report = state.tests[-1]
    assert report.command == case.command, (report.command, report.command_source)
    assert report.tests_ran and report.tests_ran > 0 and report.passed
    assert "base commit" in report.baseline and "failed" in report.baseline
    assert any(case.failing in f for f in report.fixed), (report.fixed, report.baseline)
    assert case.new.strip() in file_on_main(repo, case.path)
    closed = await LocalPlatform(local_repo_ref(repo), s.data_dir).get_issue(1)
    assert closed.state == "closed"  # "Fixes #1" closed it, as a forge would
    left = subprocess.run(["git", "ls-files"], cwd=repo, capture_output=True, text=True).stdout.split()
    assert not any(p.startswith(("target/", "node_modules", "build/")) or p.endswith((".o", ".egg-info")) for p in left)
    assert "Cargo.lock" not in left  # a file the test run made, not the agent: left out of the commit

    # a wrong fix (fixes nothing, or breaks another test): refused, nothing merged
    wrong_repo = make_repo(name, tmp_path / "wrong")
    state = await run(
        client, task_queue, s, wrong_repo, case.title, script(tmp_path, case.path, [(case.old, case.wrong)], "wrong")
    )
    assert state.status == TaskStatus.FAILED, state.status
    refused = state.tests[-1]
    assert not refused.passed and refused.tests_ran and refused.tests_ran > 0, refused.summary
    # refused for what it did: broke a test that passed on the base, or left the failures as they were
    assert refused.regressions or "fixed none" in refused.summary, refused.summary
    assert case.old.strip() in file_on_main(wrong_repo, case.path)


async def test_a_repository_without_tests_is_not_merged_without_a_person(
    client: Client, task_queue: str, settings: Settings, tmp_path: Path
) -> None:
    repo = make_repo("no-tests", tmp_path / "repo")
    transcript = script(tmp_path, "src/units/__init__.py", [("value /= 1000", "value /= 1024")])
    s = configured(settings)
    platform = LocalPlatform(local_repo_ref(repo), s.data_dir)
    issue = platform.create_issue("human() divides by 1000", "1 KiB is 1024 bytes.", author="reporter")
    service = TaskService(client, task_queue)
    opts = s.task_options(transcript=str(transcript), retry_initial_s=0.1)
    async with running_worker(client, task_queue, build_activities(s), s):
        wid, _ = await service.start(IssueTaskInput(repo=platform.repo, issue_number=issue.number, options=opts))
        waiting = await wait_for_status(service, wid, TaskStatus.AWAITING_APPROVAL, timeout_s=240)
        detail = [st for st in waiting.steps if st.name == StepName.APPROVAL][-1].detail
        assert "untested" in detail and "no test command found" in detail, detail
        report = waiting.tests[-1]
        assert report.untested and report.tests_ran is None
        pulls = platform.list_pull_requests()
        assert len(pulls) == 1 and "Not tested" in pulls[0].body
        assert pulls[0].draft  # opened as a draft: nothing tested it
        assert "value /= 1000" in file_on_main(repo, "src/units/__init__.py")  # nothing merged on its own
        await service.approve(wid, by="maintainer", reason="checked by hand")
        state = await service.result(wid)
    assert state.status == TaskStatus.MERGED
    assert "value /= 1024" in file_on_main(repo, "src/units/__init__.py")


async def test_a_broken_environment_is_reported_as_one_and_the_model_is_never_asked(
    client: Client, task_queue: str, settings: Settings, tmp_path: Path
) -> None:
    if shutil.which("npm") is None:
        pytest.skip("npm not installed here")
    repo = make_repo("broken-node", tmp_path / "repo")
    # The coding session would fix index.js: it must never be reached.
    transcript = script(tmp_path, "index.js", [("return a - b;", "return a + b;")])
    state = await run(client, task_queue, configured(settings), repo, "add() subtracts", transcript)
    assert state.status == TaskStatus.FAILED
    assert "cannot run here, before any change" in state.error and "mocha" in state.error, state.error
    assert "setup problem" in state.error and "agent.test_command" in state.error
    assert "without changing any file" not in state.error  # not blamed on the model
    assert not any(st.name == StepName.TEST for st in state.steps)
    assert "return a - b;" in file_on_main(repo, "index.js")


async def test_the_plan_is_made_from_the_repository_and_a_plan_naming_missing_files_is_asked_again(
    client: Client, task_queue: str, settings: Settings, tmp_path: Path
) -> None:
    """The issue names no file. The analysis and the plan see the repository's map (recipes.py
    with dotproduct() ranked first); a plan naming a file that does not exist is asked for again,
    saying which; the approved plan names the real file."""
    case = CASES["more-itertools"]
    repo = make_repo("more-itertools", tmp_path / "repo")
    path = script(tmp_path, case.path, [(case.old, case.new)])
    doc = json.loads(path.read_text())
    analysis, plan, *code = doc["exchanges"]
    analysis["expect"] = {"prompt_contains": ["more_itertools/recipes.py: ", "dotproduct()"]}
    wrong = json.loads(json.dumps(plan))
    wrong["response"]["files"] = ["lib/vectors/dot.py"]  # made up from the issue's words
    wrong["expect"] = {"prompt_contains": ["more_itertools/recipes.py: ", "dotproduct()"]}
    plan["expect"] = {
        "prompt_contains": ["these files do not exist and are not in an existing folder: lib/vectors/dot.py"]
    }
    doc["exchanges"] = [analysis, wrong, plan, *code]
    path.write_text(json.dumps(doc))
    state = await run(client, task_queue, configured(settings), repo, "The dot product of two vectors is wrong", path)
    assert state.status == TaskStatus.MERGED, state.error
    assert state.plan is not None and state.plan.files == [case.path]


async def test_a_go_module_with_a_dependency_from_a_private_proxy_is_set_up_then_tested_offline(
    client: Client, task_queue: str, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """go-deps requires example.com/strutil, which only a private module proxy serves (the
    stand-in, named in agent.setup_secrets as a team names theirs). Setup downloads it into the
    environment through Tamma's egress proxy; the runs (no network) build from there. Without
    the private proxy the task stops as a broken environment, the model never asked."""
    if shutil.which("go") is None:
        pytest.skip("go not installed here")
    fix, TITLE = ("\tif count > 1 {", "\tif count != 1 {"), "Label() says -2 file"
    # A team's registry has a name (Go never sends a loopback address through a proxy): the
    # stand-in's is modules.corp.test, which the worker's resolver — Tamma's egress proxy resolves
    # names outside the sandbox — answers with the stand-in's address.
    real_getaddrinfo = socket.getaddrinfo

    def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
        return real_getaddrinfo("127.0.0.1" if host == "modules.corp.test" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    with goproxy() as private:
        url = private.url.replace("127.0.0.1", "modules.corp.test")
        s = configured(settings, agent={"setup_secrets": {"GOPROXY": url, "GONOSUMDB": "example.com"}})
        repo = make_repo("go-deps", tmp_path / "repo")
        state = await run(client, task_queue, s, repo, TITLE, script(tmp_path, "badge/badge.go", [fix]))
        assert state.status == TaskStatus.MERGED, (state.error, [t.summary for t in state.tests])
        report = state.tests[-1]
        assert report.command == "go test -v ./..." and report.tests_ran and report.passed
        assert any("TestLabelOfNegativeCountsIsPlural" in f for f in report.fixed), report.fixed
        assert [r.path for r in private.requests if r.path.endswith(".zip")] == ["/example.com/strutil/@v/v1.0.0.zip"]
        wrong = make_repo("go-deps", tmp_path / "wrong")
        edits = [("\tif count > 1 {", "\tif count > 2 {")]
        state = await run(client, task_queue, s, wrong, TITLE, script(tmp_path, "badge/badge.go", edits, "w"))
        assert state.status == TaskStatus.FAILED and state.tests[-1].tests_ran, state.tests[-1].summary
    # no private proxy (a fresh data dir: no environment to reuse): the module cannot be fetched
    bare = configured(settings.model_copy(update={"data_dir": tmp_path / "other-data"}))
    repo = make_repo("go-deps", tmp_path / "bare")
    state = await run(client, task_queue, bare, repo, TITLE, script(tmp_path, "badge/badge.go", [fix], "b"))
    assert state.status == TaskStatus.FAILED
    assert "cannot run here, before any change" in state.error and "setup" in state.error, state.error
    assert "\tif count > 1 {" in file_on_main(repo, "badge/badge.go")


#: one repository per toolchain the multi-language image carries (deploy/sandbox/Containerfile)
MULTI_LANGUAGE = [
    "node-test", "pnpm-workspace", "rust-crate", "go-module", "c-make", "cmake-ctest", "uv-dependency-groups"
]


@pytest.mark.container
@pytest.mark.slow
@pytest.mark.parametrize("name", MULTI_LANGUAGE)
async def test_each_language_merges_inside_the_multi_language_container_image(
    client: Client, task_queue: str, settings: Settings, tmp_path: Path, name: str
) -> None:
    """The container backend with the image deploy/sandbox/Containerfile builds (CI builds it:
    .ci/sandbox-image.sh, SANDBOX_MULTI_IMAGE), no host toolchain shown: setup, the baseline and
    the gate run on the image's Python, Node + corepack, cargo, Go and make alone."""
    image = os.environ.get("SANDBOX_MULTI_IMAGE", "")
    if not image:
        if os.environ.get("SANDBOX_TEST_REQUIRE_CONTAINER") == "1":
            pytest.fail("SANDBOX_MULTI_IMAGE is not set: .ci/sandbox-image.sh builds the multi-language image")
        pytest.skip("SANDBOX_MULTI_IMAGE is not set (.ci/sandbox-image.sh builds the multi-language image)")
    case = CASES[name]
    sandbox = {**settings.agent.sandbox.model_dump(), "backend": "container", "image": image, "toolchains": []}
    sandbox["timeout_s"] = 300
    s = configured(settings, agent={"setup_secrets": case.setup_secrets, "sandbox": sandbox})
    repo = make_repo(name, tmp_path / "repo")
    state = await run(client, task_queue, s, repo, case.title, script(tmp_path, case.path, [(case.old, case.new)]))
    assert state.status == TaskStatus.MERGED, (state.error, [t.summary for t in state.tests])
    report = state.tests[-1]
    assert report.command == case.command and report.tests_ran and report.passed, report.summary
    assert report.isolation.startswith(f"container ({image})"), report.isolation
    assert "base commit" in report.baseline and any(case.failing in f for f in report.fixed), report.fixed
    assert case.new.strip() in file_on_main(repo, case.path)


async def test_a_rust_crate_with_a_dependency_from_a_private_registry_is_set_up_then_tested_offline(
    client: Client, task_queue: str, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rust-deps depends on corp-strutil from the team's registry, which its .cargo/config.toml
    names (sparse+http://cargo.corp.test/index/) and agent.setup_allow_hosts allows. Setup runs
    `cargo fetch` into the environment through Tamma's egress proxy; the runs build from there
    with no network."""
    if shutil.which("cargo") is None and not (Path.home() / ".cargo/bin/cargo").exists():
        pytest.skip("cargo not installed here")
    with cargo_registry("http://cargo.corp.test") as registry:
        port = int(registry.url.rsplit(":", 1)[1])
        real_getaddrinfo = socket.getaddrinfo

        def resolve(host: Any, service: Any, *args: Any, **kwargs: Any) -> Any:
            # the registry's name, port 80, answered by the stand-in (the egress proxy resolves
            # names on the worker, outside the sandbox)
            if host == "cargo.corp.test":
                return real_getaddrinfo("127.0.0.1", port, *args, **kwargs)
            return real_getaddrinfo(host, service, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", resolve)
        hosts = [*settings.agent.setup_allow_hosts, "cargo.corp.test"]
        s = configured(settings, agent={"setup_allow_hosts": hosts})
        repo = make_repo("rust-deps", tmp_path / "repo")
        fix = [("    if count > 1 {", "    if count != 1 {")]
        state = await run(client, task_queue, s, repo, "label() says -2 file", script(tmp_path, "src/lib.rs", fix))
        assert state.status == TaskStatus.MERGED, (state.error, [t.summary for t in state.tests])
        report = state.tests[-1]
        assert report.command == "cargo test" and report.tests_ran and report.passed, report.summary
        assert any("zero_and_negative_counts_are_plural" in f for f in report.fixed), report.fixed
        assert any(r.path.endswith("/corp-strutil/1.0.0/download") for r in registry.requests)
    left = subprocess.run(["git", "ls-files"], cwd=repo, capture_output=True, text=True).stdout.split()
    assert not any(p.startswith("target/") for p in left)
