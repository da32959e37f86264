"""The one settings schema and its loader.

Sources, strongest first: arguments to ``load_settings``, ``TAMMA_*`` environment variables
(``__`` separates nesting levels: ``TAMMA_TEMPORAL__ADDRESS``), a TOML file (``--config``,
``TAMMA_CONFIG``, ``./tamma.toml`` or ``<user config dir>/tamma/config.toml``), then defaults.
Settings are read only at the entry points (CLI, worker, API) and passed inward.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import BaseModel, Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from tamma.errors import ConfigError
from tamma.models import ApprovalPolicy, Budget, SandboxPolicy, TaskOptions
from tamma.redact import secret_values


class TemporalSettings(BaseModel):
    address: str | None = Field(
        default=None, description="host:port of a Temporal frontend; unset = embedded dev server"
    )
    namespace: str = "default"
    task_queue: str = "tamma"
    embedded_port: int = 7233
    embedded_ui_port: int = 8233
    connect_timeout_s: float = 10.0


class WorkerSettings(BaseModel):
    concurrency: int = Field(default=3, ge=1, description="issues' heavy steps run at once")
    light_concurrency: int = Field(default=20, ge=1)
    graceful_shutdown_s: float = 30.0
    sticky_schedule_to_start_s: float = 3.0


DEFAULT_SETUP_HOSTS = [
    "pypi.org",
    "files.pythonhosted.org",
    "registry.npmjs.org",
    "registry.yarnpkg.com",
    "index.crates.io",
    "static.crates.io",
    "proxy.golang.org",
    "sum.golang.org",
]


class AgentSettings(BaseModel):
    max_turns: int = Field(default=30, ge=1)
    test_command: str | None = Field(
        default=None, description="a shell command line run inside the sandbox; unset = detect from the repo"
    )
    setup_command: str | None = Field(
        default=None,
        description="prepares the repository's environment inside the sandbox; unset = .tamma/setup.sh or "
        "detected (pip into a venv, npm ci); empty = no setup",
    )
    setup_allow_hosts: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SETUP_HOSTS),
        description="the only hosts the setup step may reach (through Tamma's proxy); '*.example.com' allowed",
    )
    sandbox: SandboxPolicy = Field(default_factory=SandboxPolicy)
    bot_name: str = "Tamma"
    bot_email: str = "tamma@localhost"
    review_diff_bytes: int = Field(default=200_000, ge=1000, description="the self-review reads at most this much diff")


class ModelChoice(BaseModel):
    """Which provider and model answer one step (analysis, plan, code, review)."""

    provider: Literal["anthropic", "openai", "scripted"] | None = None
    model: str | None = None


class Price(BaseModel):
    """USD per million tokens."""

    input: float
    output: float
    cache_read: float = 0.0
    cache_write: float = 0.0


DEFAULT_MODELS = {"anthropic": "claude-sonnet-4-6", "openai": "gpt-4o-mini"}
# Published list prices where we know them; a model missing here is accounted at $0 (tokens are
# still counted): add it under llm.prices. Sonnet 4.6 is assumed to keep Sonnet 4.5's prices.
DEFAULT_PRICES = {
    "claude-sonnet-4-6": Price(input=3.0, output=15.0, cache_read=0.3, cache_write=3.75),
    "claude-sonnet-4-5": Price(input=3.0, output=15.0, cache_read=0.3, cache_write=3.75),
    "claude-opus-4-1": Price(input=15.0, output=75.0, cache_read=1.5, cache_write=18.75),
    "claude-haiku-4-5": Price(input=1.0, output=5.0, cache_read=0.1, cache_write=1.25),
    "gpt-4o": Price(input=2.5, output=10.0, cache_read=1.25),
    "gpt-4o-mini": Price(input=0.15, output=0.6, cache_read=0.075),
}


class LLMSettings(BaseModel):
    provider: Literal["auto", "scripted", "anthropic", "openai"] = Field(
        default="auto", description="auto: anthropic with an Anthropic key, openai with a base URL or key"
    )
    model: str | None = Field(default=None, description="unset: the provider's default model")
    steps: dict[Literal["analysis", "plan", "code", "review"], ModelChoice] = Field(default_factory=dict)
    transcript: Path | None = Field(default=None, description="recording for the scripted provider")
    anthropic_api_key: SecretStr | None = None
    anthropic_base_url: str | None = None
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    max_tokens: int = Field(default=8192, ge=256)
    timeout_s: float = 120.0
    output_retries: int = Field(default=2, ge=0, description="re-asks after a malformed or empty answer")
    prices: dict[str, Price] = Field(default_factory=lambda: dict(DEFAULT_PRICES))
    record: bool = Field(default=True, description="record every exchange (secrets redacted)")


class BudgetSettings(BaseModel):
    """Per-issue limits; unset means unlimited."""

    max_tokens: int | None = 3_000_000
    max_cost_usd: float | None = 10.0
    max_agent_turns: int | None = 120
    max_wall_s: float | None = 4 * 3600


class WorkflowSettings(BaseModel):
    approval_timeout_s: float = 24 * 3600
    max_fix_attempts: int = 2
    max_review_rounds: int = Field(default=2, ge=0, description="rounds of answering reviewers' comments")
    self_review: bool = Field(
        default=False, description="a model (llm.steps.review) reviews the diff before the PR is opened"
    )
    max_self_review_rounds: int = Field(default=1, ge=0)
    auto_merge: bool = True
    ci_poll_s: float = 30.0
    heartbeat_timeout_s: float = 30.0
    step_timeout_s: float = 1800.0
    retry_attempts: int = 3


class WebhookSettings(BaseModel):
    github_secrets: list[SecretStr] = Field(default_factory=list, description="several during a rotation")
    gitlab_tokens: list[SecretStr] = Field(default_factory=list)
    bot_login: str = Field(default="tamma-bot", description="the bot's user on GitHub / GitLab")
    trigger_label: str = "tamma"
    authorized_associations: list[str] = Field(default_factory=lambda: ["OWNER", "MEMBER", "COLLABORATOR"])
    authorized_users: list[str] = Field(default_factory=list, description="always allowed to command Tamma")
    repositories: list[str] = Field(
        default_factory=list, description="allowlist: 'github:owner/name', 'gitlab:group/project'"
    )
    max_body_bytes: int = 5 * 1024 * 1024
    rate_limit_per_min: int = Field(default=100, ge=1)


class ApiSettings(BaseModel):
    host: str = "0.0.0.0"
    port: int = 3000
    jwt_algorithm: Literal["HS256", "RS256"] = "HS256"
    jwt_secret: SecretStr | None = Field(default=None, description="HS256 shared secret")
    jwt_public_key: str | None = Field(default=None, description="RS256: PEM text or a path to it")
    jwt_private_key: SecretStr | None = Field(default=None, description="RS256: PEM (or path) for `tamma token create`")
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    rate_limit_per_min: int = Field(
        default=300, ge=1, description="per client IP, for /api and /docs; webhooks have their own"
    )
    local_roots: list[Path] = Field(
        default_factory=list,
        description="local repositories under these directories may be started through the API; others "
        "only when named 'local:/path' in webhooks.repositories",
    )


class TelemetrySettings(BaseModel):
    otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP collector, e.g. http://127.0.0.1:4318 (OTEL_EXPORTER_OTLP_ENDPOINT is read too); "
        "unset = no tracing",
    )
    service_name: str = Field(default="tamma", description="OTEL_SERVICE_NAME is read too")


class GitHubSettings(BaseModel):
    token: SecretStr | None = Field(default=None, description="a PAT; GITHUB_TOKEN is read too")
    app_id: int | None = Field(default=None, description="GitHub App auth instead of a token")
    app_private_key: SecretStr | None = Field(default=None, description="the App's PEM key (text or path)")
    installation_id: int | None = None
    base_url: str = Field(default="https://api.github.com", description="GitHub Enterprise: https://HOST/api/v3")
    git_url: str | None = Field(default=None, description="clone URL template with {repo}; default from base_url")
    merge_method: Literal["merge", "squash", "rebase"] = "squash"
    draft: bool = False
    timeout_s: float = 30.0


class GitLabSettings(BaseModel):
    token: SecretStr | None = Field(default=None, description="personal, project or group token; GITLAB_TOKEN too")
    base_url: str = "https://gitlab.com"
    git_url: str | None = Field(default=None, description="clone URL template with {repo}; default from base_url")
    squash: bool = True
    timeout_s: float = 30.0


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TAMMA_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    data_dir: Path = Field(default_factory=lambda: Path(platformdirs.user_data_dir("tamma")))
    temporal: TemporalSettings = Field(default_factory=TemporalSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    agent: AgentSettings = Field(default_factory=AgentSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    approval: ApprovalPolicy = Field(default_factory=ApprovalPolicy)
    workflow: WorkflowSettings = Field(default_factory=WorkflowSettings)
    budget: BudgetSettings = Field(default_factory=BudgetSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    github: GitHubSettings = Field(default_factory=GitHubSettings)
    gitlab: GitLabSettings = Field(default_factory=GitLabSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = _CONFIG_PATH.get("path")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    def secrets(self) -> list[str]:
        """Every secret value Tamma holds (each SecretStr setting, found by walking the schema,
        so one declared tomorrow is covered too), for sandboxes and redaction to keep out."""
        return list(dict.fromkeys(secret_values(self)))

    def task_options(self, **overrides: Any) -> TaskOptions:
        w = self.workflow
        base = TaskOptions(
            policy=self.approval,
            approval_timeout_s=w.approval_timeout_s,
            max_fix_attempts=w.max_fix_attempts,
            max_review_rounds=w.max_review_rounds,
            self_review=w.self_review,
            max_self_review_rounds=w.max_self_review_rounds,
            auto_merge=w.auto_merge,
            ci_poll_s=w.ci_poll_s,
            heartbeat_timeout_s=w.heartbeat_timeout_s,
            step_timeout_s=w.step_timeout_s,
            retry_attempts=w.retry_attempts,
            budget=Budget(**self.budget.model_dump()),
        )
        return base.model_copy(update=overrides)


# The TOML path has to reach settings_customise_sources, a classmethod pydantic calls for us;
# this holder is set and cleared inside load_settings only.
_CONFIG_PATH: dict[str, Path | None] = {}


def find_config_file(explicit: Path | None = None) -> Path | None:
    if explicit is not None:
        return explicit
    env = os.environ.get("TAMMA_CONFIG")
    if env:
        return Path(env)
    for candidate in (Path("tamma.toml"), Path(platformdirs.user_config_dir("tamma")) / "config.toml"):
        if candidate.is_file():
            return candidate
    return None


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Read settings once at an entry point; raise ConfigError with a fix on bad input."""
    path = find_config_file(config_file)
    if path is not None:
        _check_toml(path)
    overrides = _vendor_env_keys(overrides)
    _CONFIG_PATH["path"] = path
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        where = f"config file {path} or TAMMA_* environment" if path else "TAMMA_* environment"
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"invalid setting {loc!r} ({first['msg']}) in {where}; fix or remove it") from None
    finally:
        _CONFIG_PATH.clear()


def _vendor_env_keys(overrides: dict[str, Any]) -> dict[str, Any]:
    """Honour the vendors' own variables (ANTHROPIC_API_KEY, OPENAI_API_KEY, OPENAI_BASE_URL)
    when the TAMMA_* ones are unset, so an existing shell setup just works."""
    llm: dict[str, Any] = {}
    for var, key in (
        ("ANTHROPIC_API_KEY", "anthropic_api_key"),
        ("OPENAI_API_KEY", "openai_api_key"),
        ("OPENAI_BASE_URL", "openai_base_url"),
        ("ANTHROPIC_BASE_URL", "anthropic_base_url"),
    ):
        if os.environ.get(var) and not os.environ.get(f"TAMMA_LLM__{key.upper()}"):
            llm[key] = os.environ[var]
    result = dict(overrides)
    if llm and "llm" not in overrides:
        result["llm"] = llm
    telemetry = {
        key: os.environ[var]
        for var, key in (("OTEL_EXPORTER_OTLP_ENDPOINT", "otlp_endpoint"), ("OTEL_SERVICE_NAME", "service_name"))
        if os.environ.get(var) and not os.environ.get(f"TAMMA_TELEMETRY__{key.upper()}")
    }
    if telemetry and "telemetry" not in overrides:
        result["telemetry"] = telemetry
    for var, section in (("GITHUB_TOKEN", "github"), ("GITLAB_TOKEN", "gitlab")):
        if os.environ.get(var) and not os.environ.get(f"TAMMA_{section.upper()}__TOKEN") and section not in overrides:
            result[section] = {"token": os.environ[var]}
    return result


def _check_toml(path: Path) -> None:
    try:
        tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; create it or unset TAMMA_CONFIG") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read ({exc}); check its permissions") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML ({exc}); fix the syntax") from None
