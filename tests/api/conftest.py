"""A real uvicorn server with the real app on 127.0.0.1, in its own thread and event loop,
talking to the session's Temporal dev server."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from tamma.api.app import create_app
from tamma.api.auth import create_token
from tamma.api.server import server_options
from tamma.config import Settings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
GITHUB_SECRET = "gh-webhook-secret"
GITLAB_TOKEN = "gl-webhook-token"
JWT_SECRET = "jwt-test-secret-with-enough-length-0123456789"


@contextmanager
def running_api(
    settings: Settings, config_path: Path | None = None, started: Callable[[Any], None] | None = None
) -> Iterator[str]:
    """The real app on a real socket; `started(app)` runs once it serves (to inject a fault)."""
    app = create_app(settings, config_path=config_path)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", **server_options()))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "API server did not start"
        time.sleep(0.02)
    if started is not None:
        started(app)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


@asynccontextmanager
async def a_task_over_http(
    settings: Settings, client: Any, task_queue: str, tmp_path: Path
) -> AsyncIterator[tuple[str, httpx.AsyncClient, str]]:
    """The real API on a socket and a worker, with the demo issue's task started through the API
    (waiting for approval when approval.auto_approve is off): (url, client, task id)."""
    from tamma.demo import make_demo
    from tamma.runtime.wiring import build_activities
    from tests.conftest import running_worker

    repo, _ = make_demo(tmp_path / "repo", settings.data_dir)
    with running_api(settings, tmp_path / "t.toml") as url:
        async with (
            httpx.AsyncClient(base_url=url, timeout=30) as http,
            running_worker(client, task_queue, build_activities(settings), settings),
        ):
            created = await http.post(
                "/api/v1/tasks", json={"repository": f"local:{repo.path}", "issue": 1}, headers=auth(settings, "operator")
            )
            assert created.status_code == 201, created.text
            yield url, http, created.json()["id"]


@pytest.fixture
def api_settings(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    # Secrets come from the environment, as in a deployment, so the settings a restart (or PUT
    # /config) reads again hold them too.
    monkeypatch.setenv("TAMMA_API__JWT_SECRET", JWT_SECRET)
    monkeypatch.setenv("TAMMA_WEBHOOKS__GITHUB_SECRETS", json.dumps([GITHUB_SECRET, "previous-secret"]))
    monkeypatch.setenv("TAMMA_WEBHOOKS__GITLAB_TOKENS", json.dumps([GITLAB_TOKEN]))
    return with_sections(
        settings,
        webhooks={
            "github_secrets": [GITHUB_SECRET, "previous-secret"],
            "gitlab_tokens": [GITLAB_TOKEN],
            "bot_login": "Codertocat",
            "authorized_users": ["root"],
            "rate_limit_per_min": 100_000,
        },
        api={"jwt_secret": JWT_SECRET, "rate_limit_per_min": 100_000, "local_roots": [str(tmp_path)]},
    )


def with_sections(settings: Settings, **sections: dict[str, Any]) -> Settings:
    """A copy with some sections' fields changed, validated (secrets become SecretStr)."""
    update = {}
    for name, fields in sections.items():
        current = getattr(settings, name)
        update[name] = type(current).model_validate({**_plain(current), **fields})
    return settings.model_copy(update=update)


def _plain(model: Any) -> dict[str, Any]:
    from pydantic import SecretStr

    out: dict[str, Any] = {}
    for key in type(model).model_fields:
        value = getattr(model, key)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, list):
            value = [v.get_secret_value() if isinstance(v, SecretStr) else v for v in value]
        out[key] = value
    return out


@pytest.fixture
def api(api_settings: Settings, tmp_path: Path) -> Iterator[str]:
    with running_api(api_settings, tmp_path / "tamma.toml") as url:
        yield url


def token(settings: Settings, role: str, ttl: int = 600) -> str:
    return create_token(settings.api, "tester", role, ttl)  # type: ignore[arg-type]


def auth(settings: Settings, role: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token(settings, role)}"}


def github_headers(
    body: bytes, event: str, delivery: str, secret: str = GITHUB_SECRET, content_type: str = "application/json"
) -> dict[str, str]:
    sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "x-github-event": event,
        "x-github-delivery": delivery,
        "x-hub-signature-256": sig,
        "content-type": content_type,
    }


def load(rel: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / rel).read_text())
    return data


@pytest.fixture
async def http(api: str) -> Any:
    async with httpx.AsyncClient(base_url=api, timeout=30) as client:
        yield client
