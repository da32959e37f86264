"""The deployment tests: the image, the compose stack and the Helm chart, on real engines.

They need `.ci/deploy-engines.sh` (our own dockerd, podman, the stand-in base images and the
`tamma:ci` image built from the Dockerfile); without it they are skipped with the reason, except
when DEPLOY_TEST_REQUIRE=1 (`.ci/run`), where a missing engine fails them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent  # the tools of the `deploy` extra: check-jsonschema, hadolint, ...
DOCKER = "/usr/bin/docker"  # Debian's 20.10 client: BuildKit without buildx
REQUIRED = os.environ.get("DEPLOY_TEST_REQUIRE") == "1"
IMAGE = os.environ.get("DEPLOY_IMAGE", "tamma:ci")
WORK = Path(os.environ.get("DEPLOY_WORK", "/tmp/tamma-ci-deploy"))
#: what a worker container needs for bubblewrap (deploy/docker/README.md)
SANDBOX_OPTS = [
    "--security-opt",
    f"seccomp={ROOT / 'deploy/docker/seccomp.json'}",
    "--security-opt",
    "systempaths=unconfined",
]


def _engine_ready() -> str:
    if not os.environ.get("DOCKER_HOST"):
        return 'DOCKER_HOST is not set (eval "$(bash .ci/deploy-engines.sh)")'
    done = subprocess.run([DOCKER, "image", "inspect", IMAGE], capture_output=True, text=True, check=False)
    return "" if done.returncode == 0 else f"image {IMAGE} not found: {done.stderr.strip()[:200]}"


WHY_NOT = _engine_ready() if os.path.exists(DOCKER) else f"{DOCKER} not installed"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/deploy/" in str(item.path):
            item.add_marker(pytest.mark.deploy)
            if WHY_NOT and not REQUIRED:
                item.add_marker(pytest.mark.skip(reason=f"no deployment engine here: {WHY_NOT}"))


def run(
    argv: Sequence[str], *, check: bool = True, timeout: float = 300, **kw: Any
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False, **kw)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} -> {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def docker(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return run([DOCKER, *args], check=check, timeout=timeout)


def inspect(name: str) -> dict[str, Any]:
    return json.loads(docker("inspect", name).stdout)[0]  # type: ignore[no-any-return]


def wait_health(name: str, want: str = "healthy", limit_s: float = 60) -> float:
    """Seconds from now until the container's health is `want` (or AssertionError with its logs)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        state = inspect(name)["State"]
        if state.get("Health", {}).get("Status") == want:
            return time.monotonic() - t0
        if state["Status"] == "exited":
            break
        time.sleep(0.2)
    logs = docker("logs", "--tail", "40", name, check=False)
    raise AssertionError(f"{name} not {want}: {inspect(name)['State']}\n{logs.stdout}\n{logs.stderr}")


def dockerd(mode: str) -> None:
    run(["bash", str(ROOT / ".ci/dockerd.sh"), mode], env=dict(os.environ, DEPLOY_WORK=str(WORK)), timeout=120)


@pytest.fixture
def names() -> Iterator[list[str]]:
    """Container and volume names a test makes; removed afterwards, only those."""
    made: list[str] = []
    yield made
    for name in made:
        docker("rm", "-f", "-v", name, check=False)
        docker("volume", "rm", "-f", name, check=False)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
