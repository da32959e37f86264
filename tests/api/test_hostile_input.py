"""The smaller holes of the red-team pass, over real sockets: unauthenticated input that used to
answer 500, a token that lives too long, credentials in URLs shown by GET /config, a validate
call that read any file on the event loop and said whether it existed, and the sandbox turned
off through the API."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
import jwt
import pytest

from tamma.config import Settings
from tamma.errors import ConfigError
from tests.api.conftest import JWT_SECRET, auth, github_headers, token


async def test_unauthenticated_oddities_are_4xx_never_500(http: httpx.AsyncClient, api_settings: Settings) -> None:
    body = b'{"zen": "x"}'
    headers = github_headers(body, "ping", "d-1")
    headers["x-hub-signature-256"] = "sha256=" + "é" * 64
    answer = await http.post("/webhooks/github", content=body, headers={k: v.encode("latin-1") for k, v in headers.items()})  # type: ignore[misc]
    assert answer.status_code == 401, answer.text
    deep = ("[" * 100_000 + "]" * 100_000).encode()
    signed = github_headers(b'{"a": ' + deep + b"}", "issues", "d-2")
    answer = await http.post("/webhooks/github", content=b'{"a": ' + deep + b"}", headers=signed)
    assert answer.status_code == 400 and "nested" in answer.text
    for role in (["admin"], {"admin": 1}, 3):
        now = int(time.time())
        tok = jwt.encode({"sub": "x", "role": role, "iat": now, "exp": now + 60}, JWT_SECRET, algorithm="HS256")
        answer = await http.get("/api/v1/tasks", headers={"authorization": f"Bearer {tok}"})
        assert answer.status_code == 401, (role, answer.status_code)


async def test_a_token_may_not_outlive_the_maximum(http: httpx.AsyncClient, api_settings: Settings) -> None:
    now = int(time.time())
    forever = jwt.encode({"sub": "x", "role": "admin", "exp": now + 10 * 365 * 86400}, JWT_SECRET, algorithm="HS256")
    answer = await http.get("/api/v1/tasks", headers={"authorization": f"Bearer {forever}"})
    assert answer.status_code == 401 and "max_token_ttl_s" in answer.text
    with pytest.raises(ConfigError, match="at most"):
        token(api_settings, "viewer", ttl=api_settings.api.max_token_ttl_s + 1)
    assert (await http.get("/api/v1/tasks", headers=auth(api_settings, "viewer"))).status_code == 200


async def test_get_config_hides_credentials_in_urls(api_settings: Settings, tmp_path: Path) -> None:
    from tests.api.conftest import running_api, with_sections

    s = with_sections(
        api_settings,
        github={"git_url": "https://x-access-token:ghs_SECRETinURL@github.example/{repo}.git"},
        notify={"webhook_url": "https://hooks.example/services/T0/B0/SECRETPATH"},
    )
    s = s.model_copy(update={"llm": s.llm.model_copy(update={"openai_base_url": "https://proxy.example/v1?key=SECRETQ"})})
    with running_api(s, tmp_path / "tamma.toml") as url:
        async with httpx.AsyncClient(base_url=url) as http:
            shown = (await http.get("/api/v1/config", headers=auth(s, "operator"))).text
    for secret in ("SECRETinURL", "SECRETPATH", "SECRETQ"):
        assert secret not in shown
    assert "https://api.github.com" in shown  # a URL without credentials is shown as it is


async def test_validate_reads_no_fifo_and_is_no_existence_oracle(
    http: httpx.AsyncClient, api_settings: Settings, tmp_path: Path
) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    exists = tmp_path / "exists.txt"
    exists.write_text("x" * 10)
    answers = []
    for target in (fifo, "/dev/zero", tmp_path / "missing", exists):
        doc = {"github": {"token": f"file:{target}"}, "api": {"jwt_secret": "env:TAMMA_NO_SUCH_VARIABLE"}}
        answer = await http.post("/api/v1/config/validate", json=doc, headers=auth(api_settings, "operator"), timeout=20)
        assert answer.status_code == 200, answer.text
        answers.append(answer.json())
    # FIFO, device and missing file answer alike, and none says why (or that the variable is unset).
    errors = [json.dumps(a["errors"]) for a in answers[:3]]
    assert len(set(errors)) == 1 and "No such file" not in errors[0] and "not set" not in errors[0]
    assert "regular file" not in errors[0] and "TAMMA_NO_SUCH_VARIABLE" not in errors[0]


async def test_the_sandbox_cannot_be_turned_off_through_the_api(
    http: httpx.AsyncClient, api_settings: Settings, tmp_path: Path
) -> None:
    admin = auth(api_settings, "admin")
    answer = await http.put("/api/v1/config", json={"agent": {"sandbox": {"backend": "none"}}}, headers=admin)
    assert answer.status_code == 422 and "allow_unsandboxed_config" in answer.text
    answer = await http.put("/api/v1/config", json={"api": {"allow_unsandboxed_config": True}}, headers=admin)
    assert answer.status_code == 422 and "only be set in the settings file" in answer.text
    assert not (tmp_path / "tamma.toml").exists() or "none" not in (tmp_path / "tamma.toml").read_text()
    # The file's own opt-in allows it.
    (tmp_path / "tamma.toml").write_text("[api]\nallow_unsandboxed_config = true\n")
    answer = await http.put(
        "/api/v1/config",
        json={"api": {"allow_unsandboxed_config": True}, "agent": {"sandbox": {"backend": "none"}}},
        headers=admin,
    )
    assert answer.status_code == 200, answer.text
