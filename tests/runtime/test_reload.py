"""Hot reload on a running worker process and a running server: a change a worker depends on
makes it drain and restart (same PID, new settings); a live section of the server applies at
once; an invalid edit is refused and the running settings stay."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tamma.config import Settings
from tests.api.conftest import github_headers, running_api

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
#: a restart drains first, and a drain may take up to worker.graceful_shutdown_s (30 s) before the
#: new process polls: waiting only 30 s for the second "worker polling" failed once under CI load
RESTART_S = 90.0


def wait_for(predicate: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_a_worker_restarts_itself_when_its_settings_change(settings: Settings, tmp_path: Path) -> None:
    config = tmp_path / "worker.toml"
    config.write_text('[agent]\ntest_command = "python3 -m unittest"\n')
    log = tmp_path / "worker.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAMMA_")}
    env.update(
        TAMMA_CONFIG=str(config),
        TAMMA_TEMPORAL__ADDRESS=settings.temporal.address or "",
        TAMMA_TEMPORAL__TASK_QUEUE=settings.temporal.task_queue,
        TAMMA_DATA_DIR=str(settings.data_dir),
    )
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "worker.py")], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    text = lambda: log.read_text(errors="replace")  # noqa: E731
    try:
        wait_for(lambda: text().count("worker polling") == 1, "the worker never polled")
        first = text().split("worker polling", 1)[1].split("\n", 1)[0]
        config.write_text('[agent]\ntest_command = "python3 -m unittest -v"\n')
        wait_for(lambda: text().count("worker polling") == 2, f"no restart after the edit:\n{text()}", RESTART_S)
        assert "settings changed (agent.test_command): draining" in text()
        assert proc.poll() is None  # the same process (re-exec keeps the PID), running again
        # An edit that does not validate is refused; the worker goes on with what it has.
        config.write_text("[agent]\ntest_comand = 'oops'\n")
        wait_for(lambda: "config change refused" in text(), f"the bad edit was not refused:\n{text()}")
        assert "did you mean test_command" in text() and text().count("worker polling") == 2
        assert proc.poll() is None
        assert first  # the ready line named the queue
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert proc.returncode == 0


async def test_the_server_applies_a_live_section_at_once(api_settings: Settings, tmp_path: Path) -> None:
    config = tmp_path / "tamma.yaml"
    config.write_text("webhooks:\n  rate_limit_per_min: 100000\n")
    os.environ.pop("TAMMA_WEBHOOKS__GITHUB_SECRETS", None)  # set by api_settings; here the file rules
    body = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1}).encode()

    async def ping(http: httpx.AsyncClient, secret: str) -> int:
        headers = github_headers(body, "ping", str(uuid.uuid4()), secret=secret)
        return (await http.post("/webhooks/github", content=body, headers=headers)).status_code

    with running_api(api_settings, config) as url:
        async with httpx.AsyncClient(base_url=url) as http:
            assert await ping(http, "rotated-by-editing-the-file") == 401
            config.write_text(
                "webhooks:\n  rate_limit_per_min: 100000\n  github_secrets: ['rotated-by-editing-the-file']\n"
            )
            deadline = time.monotonic() + 20
            while await ping(http, "rotated-by-editing-the-file") != 200:
                assert time.monotonic() < deadline, "the edited secret never applied"
                await asyncio.sleep(0.2)
            config.write_text("webhooks:\n  github_secrets: [oops\n")  # broken YAML: refused
            await asyncio.sleep(1.5)
            assert await ping(http, "rotated-by-editing-the-file") == 200  # the running settings stayed
            health = (await http.get("/health")).json()
            assert health["settings"].startswith("last edit refused:"), health
            config.write_text("")  # truncated (an editor mid-write): refused too, webhooks stay on
            await asyncio.sleep(1.5)
            assert await ping(http, "rotated-by-editing-the-file") == 200
            assert "is empty" in (await http.get("/health")).json()["settings"]


def start_worker(settings: Settings, config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAMMA_")}
    env.update(
        TAMMA_CONFIG=str(config),
        TAMMA_TEMPORAL__ADDRESS=settings.temporal.address or "",
        TAMMA_TEMPORAL__TASK_QUEUE=settings.temporal.task_queue,
        TAMMA_DATA_DIR=str(settings.data_dir),
    )
    return subprocess.Popen(
        [sys.executable, str(ROOT / "worker.py")], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )


def test_a_file_caught_empty_mid_write_is_never_applied(settings: Settings, tmp_path: Path) -> None:
    """`cat > tamma.toml` truncates first and writes later: for that moment the file is empty, a
    valid document that means "all defaults" (webhooks off, no forge token). It must be refused,
    and the complete file that follows applied."""
    config = tmp_path / "worker.toml"
    config.write_text('[agent]\ntest_command = "python3 -m unittest"\n')
    log = tmp_path / "worker.log"
    proc = start_worker(settings, config, log)
    text = lambda: log.read_text(errors="replace")  # noqa: E731
    try:
        wait_for(lambda: text().count("worker polling") == 1, "the worker never polled")
        with config.open("w") as fh:  # truncated, and left so for 1.5 s
            fh.flush()
            time.sleep(1.5)
            fh.write('[agent]\ntest_command = "python3 -m unittest -v"\n')
        wait_for(lambda: text().count("worker polling") == 2, f"no restart after the write:\n{text()}", RESTART_S)
        assert "is empty (a write in progress, or truncated)" in text()
        assert text().count("settings changed") == 1 and "settings changed (agent.test_command)" in text()
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_a_configmap_style_link_swap_is_followed(settings: Settings, tmp_path: Path) -> None:
    """Kubernetes updates a mounted ConfigMap by pointing `..data` at a new folder (an atomic
    rename of a link); the file itself (`tamma.toml -> ..data/tamma.toml`) never changes."""
    mount = tmp_path / "config"
    mount.mkdir()
    for version, command in (("..v1", "python3 -m unittest"), ("..v2", "python3 -m unittest -v")):
        (mount / version).mkdir()
        (mount / version / "tamma.toml").write_text(f'[agent]\ntest_command = "{command}"\n')
    os.symlink("..v1", mount / "..data")
    os.symlink("..data/tamma.toml", mount / "tamma.toml")
    log = tmp_path / "worker.log"
    proc = start_worker(settings, mount / "tamma.toml", log)
    text = lambda: log.read_text(errors="replace")  # noqa: E731
    try:
        wait_for(lambda: text().count("worker polling") == 1, "the worker never polled")
        os.symlink("..v2", mount / "..data_tmp")
        os.replace(mount / "..data_tmp", mount / "..data")  # what the kubelet does
        wait_for(lambda: text().count("worker polling") == 2, f"the swap was not noticed:\n{text()}", RESTART_S)
        assert "settings changed (agent.test_command)" in text()
    finally:
        proc.terminate()
        proc.wait(timeout=60)
