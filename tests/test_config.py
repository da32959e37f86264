"""Settings: file + TAMMA_* env with __ nesting, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tamma.config import load_settings
from tamma.errors import ConfigError


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
        ("[worker]\nconcurrency = 0\n", "invalid setting 'worker.concurrency'"),
        ("[nonsense]\nx = 1\n", "invalid setting 'nonsense'"),
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
