"""Settings: file + TAMMA_* env with __ nesting, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tamma.config import load_settings
from tamma.errors import ConfigError

PEM = "RSA PRIVATE" + " KEY"  # built at run time: a fake key must not look like a leaked one


def test_env_nesting_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "tamma.toml"
    cfg.write_text('[temporal]\naddress = "file:7233"\ntask_queue = "from-file"\n[worker]\nconcurrency = 5\n')
    monkeypatch.setenv("TAMMA_TEMPORAL__ADDRESS", "env:7233")
    s = load_settings(cfg)
    assert (s.temporal.address, s.temporal.task_queue, s.worker.concurrency) == ("env:7233", "from-file", 5)


def test_defaults_are_embedded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TAMMA_CONFIG", raising=False)
    s = load_settings()
    assert s.temporal.address is None and s.worker.concurrency == 3


@pytest.mark.parametrize(
    "text,match",
    [
        ("[temporal\n", "not valid TOML"),
        (
            "[worker]\nconcurrency = 0\n",
            r"worker\.concurrency: Input should be greater than or equal to 1 \(in .*tamma\.toml:2\)",
        ),
        ("[nonsense]\nx = 1\n", "nonsense: unknown key"),
    ],
)
def test_bad_config_file(tmp_path: Path, text: str, match: str) -> None:
    cfg = tmp_path / "tamma.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_settings(cfg)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "absent.toml")


def test_secrets_are_secret(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TAMMA_LLM__ANTHROPIC_API_KEY", "sk-ant-xyz")
    s = load_settings(data_dir=tmp_path)
    assert "sk-ant-xyz" not in repr(s) and "sk-ant-xyz" not in s.model_dump_json()
    assert s.secrets() == ["sk-ant-xyz"]


def test_secrets_are_found_by_walking_every_secret_setting(tmp_path: Path) -> None:
    """Every SecretStr anywhere in the schema is a secret, including the forge tokens and a PEM
    key given as a path (whose content is what could leak)."""
    pem = tmp_path / "app.pem"
    pem.write_text(f"-----BEGIN {PEM}-----\nMIIEpAIBAAKCAQEAsecretkeymaterial0123456789\n-----END {PEM}-----\n")
    s = load_settings(
        data_dir=tmp_path,
        github={"token": "ghp_tok_123456", "app_private_key": str(pem), "app_id": 1, "installation_id": 2},
        gitlab={"token": "glpat-tok-123456"},
        webhooks={"github_secrets": ["wh-one-1234", "wh-two-1234"], "gitlab_tokens": ["gl-hook-1234"]},
        api={"jwt_secret": "jwt-secret-1234", "jwt_private_key": "-----BEGIN KEY-----x"},
        llm={"openai_api_key": "sk-openai-1234"},
    )
    found = s.secrets()
    for value in (
        "ghp_tok_123456",
        "glpat-tok-123456",
        "wh-one-1234",
        "wh-two-1234",
        "gl-hook-1234",
        "jwt-secret-1234",
        "sk-openai-1234",
        str(pem),
    ):
        assert value in found, value
    assert any("secretkeymaterial" in v for v in found)  # the key file's content, not only its path


def test_redactor_hides_secrets_and_their_encodings() -> None:
    import base64

    from tamma.redact import REDACTED, Redactor

    r = Redactor(["sk-ant-abcdef123", "ab"])  # too short to redact safely: ignored
    text = f"key sk-ant-abcdef123 b64 {base64.b64encode(b'sk-ant-abcdef123').decode()} lab"
    assert r(text) == f"key {REDACTED} b64 {REDACTED}== lab"  # the padding says nothing


def test_a_workers_fingerprint_moves_with_what_workers_read_and_only_that() -> None:
    """The fingerprint decides whether a config edit restarts the workers: rotating a webhook
    secret or the API's JWT secret (the server's alone) used to restart every one of them."""
    from pydantic import SecretStr

    from tamma.config import Settings

    base = Settings()

    def with_(section: str, **values: object) -> Settings:
        return base.model_copy(update={section: getattr(base, section).model_copy(update=values)})

    same = [
        with_("webhooks", github_secrets=[SecretStr("rotated-webhook-secret")]),
        with_("webhooks", gitlab_tokens=[SecretStr("rotated-gitlab-token")]),
        with_("api", jwt_secret=SecretStr("rotated-jwt-secret")),
    ]
    moved = [
        with_("llm", anthropic_api_key=SecretStr("sk-ant-new")),
        with_("github", token=SecretStr("ghp_new")),
        with_("webhooks", authorized_users=["someone-new"]),  # workers decide whose reviews count
        with_("notify", webhook_url="https://hooks.example/tamma"),  # workers send the notifications
        with_("agent", max_turns=base.agent.max_turns + 1),
    ]
    assert [s.fingerprint() for s in same] == [base.fingerprint()] * len(same)
    assert all(s.fingerprint() != base.fingerprint() for s in moved)
