"""Session fixtures: one real Temporal dev server per test session, a fresh task queue per test,
real git repositories in temp dirs."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from tamma.activities import IssueActivities
from tamma.config import Settings
from tamma.demo import make_demo
from tamma.models import Issue
from tamma.platforms.local import LocalPlatform
from tamma.runtime.embedded import temporal_binary
from tamma.runtime.wiring import build_activities
from tamma.runtime.worker import build_workers
from tamma.runtime.presence import heartbeat_runtime
from tamma.workflows import search

# The real repositories under tests/fixtures/repos have test suites of their own: they are run
# inside the sandbox by tests/workflows/test_real_repos.py, never collected as Tamma's tests.
collect_ignore_glob = ["fixtures/repos/*"]

#: The real repositories end to end (tests/workflows/test_real_repos.py, marker `repos`): the
#: slowest part (~6 minutes: a real worker, sandbox and setup per repository), a stage of .ci/run of
#: its own; locally with `-m repos` or REPOS_TEST=1, skipped (saying so) otherwise.
REPOS_ASKED = os.environ.get("REPOS_TEST") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    explicit = "repos" in (config.getoption("markexpr", "") or "")
    for item in items:
        if item.path.name == "test_real_repos.py":
            item.add_marker(pytest.mark.repos)
            if not (REPOS_ASKED or explicit):
                item.add_marker(pytest.mark.skip(reason="real repositories end to end: -m repos or REPOS_TEST=1"))


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()),
        search_attributes=list(search.ALL),
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
        ui=False,
        runtime=heartbeat_runtime(),  # as every Tamma launcher: worker heartbeats every 2 s
    )
    yield env
    try:
        await replay_this_run(env.client)
    finally:
        await env.shutdown()


#: what replaying this session's own histories found (pytest_sessionfinish fails the run on any)
REPLAYED: dict[str, Any] = {"count": 0, "failures": []}


async def replay_this_run(client: Client) -> None:
    """Every IssueWorkflow, PollWorkflow and SessionWorkflow history this test session made — runs of every
    kind the tests drive, far more than the golden set — replayed on the current code before the
    server goes. A run recorded by the code and not replayable by it is a nondeterminism bug."""
    from temporalio.worker import Replayer

    from tamma.workflows.issue import IssueWorkflow
    from tamma.workflows.poll import PollWorkflow
    from tamma.workflows.session import SessionWorkflow

    workflows = [IssueWorkflow, PollWorkflow, SessionWorkflow]
    replayer = Replayer(workflows=workflows, data_converter=pydantic_data_converter)
    query = " OR ".join(f"WorkflowType = '{w.__name__}'" for w in workflows)
    histories = [h async for h in client.list_workflows(query).map_histories()]

    async def each() -> AsyncIterator[Any]:
        for history in histories:
            yield history

    results = await replayer.replay_workflows(each(), raise_on_replay_failure=False)
    REPLAYED["count"] = len(histories)
    REPLAYED["failures"] = [f"{run_id}: {str(exc)[:300]}" for run_id, exc in results.replay_failures.items()]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if REPLAYED["failures"]:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not REPLAYED["count"]:
        return
    failures = REPLAYED["failures"]
    terminalreporter.write_line(
        f"replayed the {REPLAYED['count']} workflow histories this run made on the current code: "
        + (f"{len(failures)} FAILED" if failures else "all replay")
    )
    for failure in failures:
        terminalreporter.write_line(f"  nondeterminism: {failure}", red=True)


@pytest.fixture
def client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest.fixture
def temporal_address(client: Client) -> str:
    return client.service_client.config.target_host


@pytest.fixture
def task_queue() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def settings(tmp_path: Path, temporal_address: str, task_queue: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        temporal={"address": temporal_address, "task_queue": task_queue},
        agent={"sandbox": {"timeout_s": 60}},
        workflow={"heartbeat_timeout_s": 5, "ci_poll_s": 1},
    )


@pytest.fixture
def demo(tmp_path: Path, settings: Settings) -> tuple[LocalPlatform, Issue]:
    return make_demo(tmp_path / "repo", settings.data_dir)


@pytest.fixture
def activities(settings: Settings) -> IssueActivities:
    return build_activities(settings)


@asynccontextmanager
async def running_worker(
    client: Client, task_queue: str, activities: IssueActivities, settings: Settings
) -> AsyncIterator[None]:
    workers = build_workers(client, task_queue, activities, settings.worker)
    import asyncio

    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        yield
    finally:
        for w in workers:
            await w.shutdown()
        await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture
def git_identity(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Test")
    yield


async def eventually(probe: Any, ok: Any, timeout_s: float = 10.0) -> Any:
    """Temporal's visibility store is eventually consistent: poll `probe()` until `ok(value)`."""
    import asyncio

    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        value = await probe()
        if ok(value) or asyncio.get_running_loop().time() > deadline:
            return value
        await asyncio.sleep(0.1)


def sandbox_backends() -> list[Any]:
    """The isolating backends to run a sandbox test on: bwrap always; the container backend with
    the image in SANDBOX_TEST_IMAGE (.ci/sandbox-image.sh builds one). Where no engine runs
    the container case is skipped with the reason, except when SANDBOX_TEST_REQUIRE_CONTAINER=1 (CI):
    then it runs and fails, so CI can never lose it silently."""
    import os

    from tamma.agent.sandbox import probe_container

    image = os.environ.get("SANDBOX_TEST_IMAGE", "")
    required = os.environ.get("SANDBOX_TEST_REQUIRE_CONTAINER") == "1"
    engine, why = probe_container("auto", image) if image else (None, "SANDBOX_TEST_IMAGE is not set")
    container = pytest.param(
        "container",
        marks=[
            pytest.mark.container,
            pytest.mark.skipif(engine is None and not required, reason=f"no container sandbox here: {why}"),
        ],
    )
    return ["bwrap", container]


def sandbox_policy(backend: str, **limits: Any) -> Any:
    import os

    from tamma.agent.sandbox import SandboxPolicy

    image = os.environ.get("SANDBOX_TEST_IMAGE", "python:3.11-slim")
    return SandboxPolicy(backend=backend, image=image, **limits)  # type: ignore[arg-type]


@pytest.fixture
def tcp_listener() -> Iterator[tuple[int, list[str]]]:
    """A real TCP server on 127.0.0.1 recording every connection made to it (the peer), for
    tests in which sandboxed code tries to reach the network."""
    import socket
    import threading

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    srv.settimeout(0.2)
    got: list[str] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, peer = srv.accept()
            except OSError:
                continue
            got.append(str(peer))
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield srv.getsockname()[1], got
    stop.set()
    thread.join()
    srv.close()


#: golden histories of representative runs, replayed against the current workflow code
HISTORIES = Path(__file__).parent / "fixtures" / "histories"


async def keep_history(client: Client, workflow_id: str, name: str) -> None:
    """With RECORD_HISTORIES=1, save this run's event history as the golden history `name`
    (tests/workflows/test_replay.py replays every one on the current code). Recording is a
    deliberate act — run it on the code *before* a workflow change, commit the files, then change
    the code — so an ordinary test run never rewrites them."""
    import os

    if os.environ.get("RECORD_HISTORIES") != "1":
        return
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    HISTORIES.mkdir(parents=True, exist_ok=True)
    (HISTORIES / f"{name}.json").write_text(history.to_json())
