"""Settings never silently ignore a mistake: unknown keys at every depth and in TAMMA_* names,
three formats, TAMMA_ENV layering, precedence, sources, cross-field rules."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from tamma.config import explain, load_settings, read_layers
from tamma.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No TAMMA_* or vendor variable from the host, and no config file found by accident."""
    import os

    for var in list(os.environ):
        if var.startswith("TAMMA_") or var in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GITHUB_TOKEN", "GITLAB_TOKEN"):
            monkeypatch.delenv(var)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        (
            "tamma.toml",
            "[aproval]\nauto_approve = false\n",
            r"aproval: unknown key; did you mean approval\? \(in .*tamma\.toml:1\)",
        ),
        (
            "tamma.toml",
            "[approval]\nmax_risk = 'low'\nauto_aprove = false\n",
            r"approval\.auto_aprove: unknown key; did you mean auto_approve\? \(in .*tamma\.toml:3\)",
        ),
        (
            "tamma.toml",
            "[agent.sandbox]\nnetwrok = true\n",
            r"agent\.sandbox\.netwrok: unknown key; did you mean network\? \(in .*:2\)",
        ),
        (
            "tamma.toml",
            "[llm.steps.code]\nmodle = 'x'\n",
            r"llm\.steps\.code\.modle: unknown key; did you mean model\?",
        ),
        (
            "tamma.yaml",
            "worker:\n  concurrency: 2\n  graceful_shutdwon_s: 5\n",
            r"worker\.graceful_shutdwon_s: unknown key; did you mean graceful_shutdown_s\? \(in .*tamma\.yaml:3\)",
        ),
        (
            "tamma.json",
            '{\n  "budget": {\n    "max_token": 5\n  }\n}\n',
            r"budget\.max_token: unknown key; did you mean max_tokens\? \(in .*tamma\.json:3\)",
        ),
    ],
)
def test_typos_at_every_depth_are_errors_with_a_suggestion_and_a_line(
    tmp_path: Path, name: str, text: str, expected: str
) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match=expected):
        load_settings()


@pytest.mark.parametrize(
    ("variable", "expected"),
    [
        (
            "TAMMA_WORKER__CONCURENCY",
            r"TAMMA_WORKER__CONCURENCY: worker\.concurency: unknown key; did you mean concurrency\?",
        ),
        ("TAMMA_APROVAL__AUTO_APPROVE", r"aproval: unknown key; did you mean approval\?"),
        ("TAMMA_LLM__STEPS__CODE__MODLE", r"llm\.steps\.code\.modle: unknown key; did you mean model\?"),
        ("TAMMA_DATA_DIR__X", r"data_dir has no sub-keys"),
    ],
)
def test_environment_variables_that_name_no_setting_are_errors(
    monkeypatch: pytest.MonkeyPatch, variable: str, expected: str
) -> None:
    monkeypatch.setenv(variable, "5")
    with pytest.raises(ConfigError, match=expected):
        load_settings()


def test_yaml_and_json_files_load(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("approval:\n  auto_approve: false\nbudget:\n  max_tokens: null\n")
    (tmp_path / "b.json").write_text('{"worker": {"concurrency": 7}, "approval": {"blocked_paths": ["x/**"]}}')
    a, b = load_settings(tmp_path / "a.yaml"), load_settings(tmp_path / "b.json")
    assert a.approval.auto_approve is False and a.budget.max_tokens is None and a.budget.max_cost_usd == 10.0
    assert b.worker.concurrency == 7 and b.approval.blocked_paths == ["x/**"]


def test_two_default_files_in_one_place_are_ambiguous(tmp_path: Path) -> None:
    (tmp_path / "tamma.toml").write_text("")
    (tmp_path / "tamma.yaml").write_text("")
    with pytest.raises(ConfigError, match="both exist; keep one"):
        load_settings()


def test_tamma_env_layers_a_file_and_precedence_is_flag_env_envfile_base(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "tamma.toml").write_text(
        "[worker]\nconcurrency = 1\nlight_concurrency = 11\ngraceful_shutdown_s = 5\n[temporal]\ntask_queue = 'base'\n"
    )
    (tmp_path / "tamma.production.toml").write_text("[worker]\nconcurrency = 2\nlight_concurrency = 22\n")
    monkeypatch.setenv("TAMMA_ENV", "production")
    monkeypatch.setenv("TAMMA_WORKER__CONCURRENCY", "3")
    s = load_settings(temporal={"task_queue": "flag"})
    assert s.worker.concurrency == 3  # env over the production file
    assert s.worker.light_concurrency == 22  # production file over the base file
    assert s.worker.graceful_shutdown_s == 5  # base file over defaults, kept by a deep merge
    assert s.temporal.task_queue == "flag"  # arguments over everything
    rows = {key: source for key, _, source in explain(temporal={"task_queue": "flag"})}
    assert rows["worker.concurrency"] == "environment TAMMA_WORKER__CONCURRENCY"
    assert rows["worker.light_concurrency"].endswith("tamma.production.toml:3")
    assert rows["worker.graceful_shutdown_s"].endswith("tamma.toml:4")
    assert rows["temporal.task_queue"] == "command line" and rows["api.port"] == "default"
    assert [p.name for p in read_layers().files] == ["tamma.toml", "tamma.production.toml"]


def test_tamma_env_without_its_file_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tamma.toml").write_text("")
    monkeypatch.setenv("TAMMA_ENV", "staging")
    with pytest.raises(ConfigError, match=r"TAMMA_ENV=staging but .*tamma\.staging\.toml does not exist"):
        load_settings()


def test_explain_masks_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_shown_nowhere_123")
    rows = {key: (value, source) for key, value, source in explain()}
    assert rows["github.token"] == ("********", "environment GITHUB_TOKEN")
    assert "ghp_shown_nowhere_123" not in json.dumps(rows)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[workflow]\nretry_attempts = 0\n", r"workflow\.retry_attempts: Input should be greater than or equal to 1"),
        ("[workflow]\nheartbeat_timeout_s = 60\nstep_timeout_s = 30\n", "must be below step_timeout_s"),
        ("[api]\njwt_algorithm = 'RS256'\n", "jwt_public_key is unset"),
        ("[github]\napp_id = 12\n", "needs all of github.app_id, github.app_private_key and github.installation_id"),
        ("[temporal]\nembedded_ui_port = 7233\n", "pick two ports"),
        ("[llm.steps.plan]\nprovider = 'scripted'\n", "llm.transcript is unset"),
    ],
)
def test_what_validates_cannot_crash_later(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "tamma.toml").write_text(text)
    with pytest.raises(ConfigError, match=expected):
        load_settings()


def test_budget_unlimited_and_task_options_validated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tamma.toml").write_text("[budget]\nmax_cost_usd = 'unlimited'\n")
    monkeypatch.setenv("TAMMA_BUDGET__MAX_TOKENS", "null")
    s = load_settings()
    assert s.budget.max_cost_usd is None and s.budget.max_tokens is None and s.budget.max_agent_turns == 120
    opts = s.task_options(yes=True)
    assert opts.budget == s.budget and opts.retry_attempts == s.workflow.retry_attempts and opts.yes
    with pytest.raises(ValueError, match="retry_attempts"):
        s.task_options(retry_attempts=0)


def test_a_world_readable_file_with_a_secret_is_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="tamma.config")
    exposed = tmp_path / "exposed.toml"
    exposed.write_text('[api]\njwt_secret = "jwt-in-clear-123"\n')
    exposed.chmod(0o644)
    load_settings(exposed)
    assert "chmod 600" in caplog.text and "api.jwt_secret" in caplog.text and "jwt-in-clear-123" not in caplog.text
    caplog.clear()
    private = tmp_path / "private.toml"
    private.write_text('[api]\njwt_secret = "jwt-in-clear-123"\n')
    private.chmod(0o600)
    load_settings(private)
    reference = tmp_path / "reference.toml"
    reference.write_text('[api]\njwt_secret = "file:/run/secrets/jwt"\n')
    reference.chmod(0o644)
    (tmp_path / "jwt").write_text("x" * 32)
    reference.write_text(f'[api]\njwt_secret = "file:{tmp_path / "jwt"}"\n')
    load_settings(reference)
    assert caplog.text == ""  # private, or only a reference: nothing to warn about


def test_the_published_schema_is_current_and_validates_a_config() -> None:
    """docs/settings.schema.json (for editors) is what `tamma config schema` prints today, and it
    accepts a real config while refusing a typo, as the loader does."""
    import jsonschema

    from tamma.config import Settings

    published = json.loads((Path(__file__).resolve().parents[2] / "docs" / "settings.schema.json").read_text())
    current = Settings.model_json_schema()
    current.update({"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "Tamma settings"})
    assert published == current, "regenerate: tamma config schema > docs/settings.schema.json"
    jsonschema.validate({"approval": {"auto_approve": False}, "agent": {"sandbox": {"backend": "bwrap"}}}, published)
    with pytest.raises(jsonschema.ValidationError, match="auto_aprove"):
        jsonschema.validate({"approval": {"auto_aprove": False}}, published)
