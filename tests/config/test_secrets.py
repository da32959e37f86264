"""Secret references: env:, file:, and AWS Secrets Manager against a real protocol peer (moto's
server mode over HTTP); resolved when settings are read, never shown."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tamma.config import load_settings
from tamma.errors import ConfigError
from tests.ports import free_port
from tests.standins.http import Reply, Request, serve


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in list(os.environ):
        if var.startswith("TAMMA_"):
            monkeypatch.delenv(var)
    monkeypatch.chdir(tmp_path)


def test_env_and_file_references(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "jwt").write_text("jwt-from-a-mounted-secret\n")
    monkeypatch.setenv("MY_HOOK_SECRET", "hook-from-env-123")
    cfg = tmp_path / "tamma.toml"
    cfg.write_text(
        f'[api]\njwt_secret = "file:{tmp_path / "jwt"}"\n[webhooks]\ngithub_secrets = ["env:MY_HOOK_SECRET"]\n'
    )
    s = load_settings(cfg)
    assert s.api.jwt_secret is not None and s.api.jwt_secret.get_secret_value() == "jwt-from-a-mounted-secret"
    assert [x.get_secret_value() for x in s.webhooks.github_secrets] == ["hook-from-env-123"]
    assert "hook-from-env-123" in s.secrets() and "hook-from-env-123" not in repr(s)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"env:NOT_SET_ANYWHERE"', "environment variable NOT_SET_ANYWHERE is not set"),
        ('"file:/nonexistent/secret"', "file:/nonexistent/secret cannot be read"),
        ('"env:"', "names nothing"),
    ],
)
def test_broken_references_name_the_setting_and_the_problem(tmp_path: Path, value: str, expected: str) -> None:
    cfg = tmp_path / "tamma.toml"
    cfg.write_text(f"[api]\njwt_secret = {value}\n")
    with pytest.raises(ConfigError, match=rf"api\.jwt_secret: .*{expected}.*tamma\.toml:2"):
        load_settings(cfg)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's AWS server on 127.0.0.1, and the AWS variables that point boto3 at it."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    for var, value in {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(var, value)
    yield url
    server.stop()


def test_aws_secrets_manager_reference(tmp_path: Path, aws: str) -> None:
    import boto3

    sm = boto3.client("secretsmanager")
    sm.create_secret(Name="tamma/prod", SecretString=json.dumps({"jwt": "jwt-from-aws-sm-123"}))
    sm.create_secret(Name="tamma/github", SecretString="ghp_from_aws_sm_123")
    cfg = tmp_path / "tamma.toml"
    cfg.write_text('[api]\njwt_secret = "aws-sm:tamma/prod#jwt"\n[github]\ntoken = "aws-sm:tamma/github"\n')
    s = load_settings(cfg)
    assert s.api.jwt_secret is not None and s.api.jwt_secret.get_secret_value() == "jwt-from-aws-sm-123"
    assert s.github.token is not None and s.github.token.get_secret_value() == "ghp_from_aws_sm_123"
    cfg.write_text('[api]\njwt_secret = "aws-sm:tamma/missing"\n')
    with pytest.raises(ConfigError, match=r"api\.jwt_secret: aws-sm:tamma/missing could not be read: ResourceNotFound"):
        load_settings(cfg)


def vault_kv2(token: str, secrets: dict[str, dict[str, str]]) -> Callable[[Request], Reply]:
    """Vault's KV v2 read API as documented (GET /v1/<mount>/data/<path>, X-Vault-Token)."""

    def respond(req: Request) -> Reply:
        if req.headers.get("x-vault-token") != token:
            return Reply(403, {"errors": ["permission denied"]})
        if req.method != "GET" or "/data/" not in req.path:
            return Reply(404, {"errors": []})
        mount, _, path = req.path.removeprefix("/v1/").split("?")[0].partition("/data/")
        data = secrets.get(f"{mount}:{path}")
        if data is None:
            return Reply(404, {"errors": []})
        meta = {"created_time": "2026-11-22T00:00:00Z", "deletion_time": "", "destroyed": False, "version": 3}
        return Reply(200, {"data": {"data": data, "metadata": meta}, "lease_duration": 0, "renewable": False})

    return respond


def test_vault_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = {"secret:tamma/prod": {"jwt": "jwt-from-vault-123"}, "kv:ci/github": {"token": "ghp_from_vault_123"}}
    with serve(vault_kv2("vault-root-token", store)) as vault:
        monkeypatch.setenv("VAULT_ADDR", vault.url)
        monkeypatch.setenv("VAULT_TOKEN", "vault-root-token")
        cfg = tmp_path / "tamma.toml"
        cfg.write_text('[api]\njwt_secret = "vault:tamma/prod#jwt"\n[github]\ntoken = "vault:kv:ci/github#token"\n')
        s = load_settings(cfg)
        assert s.api.jwt_secret is not None and s.api.jwt_secret.get_secret_value() == "jwt-from-vault-123"
        assert s.github.token is not None and s.github.token.get_secret_value() == "ghp_from_vault_123"
        assert [r.headers.get("x-vault-token") for r in vault.requests] == ["vault-root-token"] * 2
        monkeypatch.setenv("VAULT_TOKEN", "wrong")
        with pytest.raises(ConfigError, match=r"api\.jwt_secret: vault:tamma/prod#jwt could not be read: Forbidden"):
            load_settings(cfg)
