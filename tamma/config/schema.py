"""The settings schema: one declaration per setting. Every section refuses keys it does not
declare (``Strict``), secrets are ``Secret`` (a SecretStr that may be a reference: ``env:NAME``,
``file:/run/secrets/x``, ``aws-sm:ID``, ``vault:PATH#KEY``, resolved when settings are read), and
cross-field rules are validated here so nothing that validates can crash later.
"""

from __future__ import annotations

import hashlib
import json
import re
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import platformdirs
from pydantic import BaseModel, Field, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from tamma.config.secrets import Secret
from tamma.models import ApprovalPolicy, Budget, SandboxPolicy, Strict, TaskOptions, WorkflowOptions
from tamma.redact import secret_values


class TemporalSettings(Strict):
    address: str | None = Field(
        default=None, description="host:port of a Temporal frontend; unset = embedded dev server"
    )
    namespace: str = "default"
    task_queue: str = "tamma"
    embedded_port: int = Field(default=7233, ge=1, le=65535)
    embedded_ui_port: int = Field(default=8233, ge=1, le=65535)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    tls: bool = Field(
        default=False, description="TLS to the frontend (on by itself with a client certificate or an API key)"
    )
    tls_client_cert: Path | None = Field(default=None, description="PEM client certificate for mTLS (Temporal Cloud)")
    tls_client_key: Path | None = Field(default=None, description="PEM private key of tls_client_cert")
    tls_server_ca: Path | None = Field(default=None, description="PEM CA bundle for the server; unset: system roots")
    tls_server_name: str | None = Field(
        default=None, description="the server's name in its certificate, if not the host"
    )
    api_key: Secret | None = Field(default=None, description="Temporal Cloud API key (sent as a bearer token over TLS)")

    @model_validator(mode="after")
    def _ports_differ(self) -> TemporalSettings:
        if self.embedded_port == self.embedded_ui_port:
            raise ValueError(f"embedded_port and embedded_ui_port are both {self.embedded_port}; pick two ports")
        if (self.tls_client_cert is None) != (self.tls_client_key is None):
            raise ValueError("tls_client_cert and tls_client_key go together: set both for mTLS, or neither")
        return self

    @property
    def uses_tls(self) -> bool:
        return self.tls or self.tls_client_cert is not None or self.api_key is not None


class WorkerSettings(Strict):
    concurrency: int = Field(default=3, ge=1, description="issues' heavy steps run at once")
    min_free_mb: int = Field(
        default=200,
        ge=0,
        description="below this much free space in the data dir a worker takes no heavy step (it stops polling "
        "for them, says why on /ready, and the step runs on another worker)",
    )
    min_free_inodes: int = Field(default=2000, ge=0, description="the same, for free inodes")
    light_concurrency: int = Field(default=20, ge=1)
    graceful_shutdown_s: float = Field(default=30.0, ge=0)
    sticky_schedule_to_start_s: float = Field(default=3.0, gt=0)
    health_address: str = Field(
        default="",
        description="host:port where a worker serves /live, /ready (polling a reachable Temporal), /health and "
        "/metrics (Prometheus: the Temporal SDK's worker metrics and Tamma's task metrics), e.g. 0.0.0.0:9464; "
        "empty: off. The container image sets it.",
    )


DEFAULT_SETUP_HOSTS = [
    "pypi.org",
    "files.pythonhosted.org",
    "registry.npmjs.org",
    "registry.yarnpkg.com",
    "repo.yarnpkg.com",  # where corepack fetches Yarn 2+ itself
    "index.crates.io",
    "static.crates.io",
    "proxy.golang.org",
    "sum.golang.org",
]


_RESERVED_SETUP_VARS = {"PATH", "HOME", "TMPDIR", "VIRTUAL_ENV", "LD_PRELOAD", "LD_LIBRARY_PATH", "BASH_ENV", "ENV"}


class AgentSettings(Strict):
    max_turns: int = Field(default=30, ge=1)
    context_window_tokens: int = Field(
        default=200_000,
        ge=4_000,
        description="the coding model's context window; old tool outputs are elided as a request nears it",
    )
    condense_at: float = Field(
        default=0.6, gt=0.1, le=0.95, description="condense when a request's prompt passes this share of the window"
    )
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
        description="the only hosts the setup step may reach (through Tamma's proxy), on ports 80 and 443; "
        "'*.example.com' allowed; 'host:8081' allows that port alone",
    )
    setup_secrets: dict[str, Secret] = Field(
        default_factory=dict,
        description="variables for the setup step only (a private index URL, a registry token; references "
        "like env:NAME or file:/run/secrets/x work): never given to test runs or the agent; the host of a URL "
        "value (with its port, when it names one) joins setup_allow_hosts",
    )
    sandbox: SandboxPolicy = Field(default_factory=SandboxPolicy)
    bot_name: str = "Tamma"
    bot_email: str = "tamma@localhost"
    review_diff_bytes: int = Field(default=200_000, ge=1000, description="the self-review reads at most this much diff")

    @model_validator(mode="after")
    def _setup_secret_names(self) -> AgentSettings:
        for name in self.setup_secrets:
            upper = name.upper()
            # a network proxy variable (HTTPS_PROXY, NO_PROXY, npm_config_proxy, YARN_HTTPS_PROXY…) would
            # steer setup around Tamma's egress proxy; GOPROXY and GONOPROXY name module registries
            network_proxy = upper.endswith(("_PROXY", "-PROXY")) or upper in ("PROXY", "ALL_PROXY")
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or upper in _RESERVED_SETUP_VARS or network_proxy:
                raise ValueError(
                    f"agent.setup_secrets: {name!r} cannot be a setup variable (a shell name, not PATH, HOME, "
                    "VIRTUAL_ENV, a proxy or a loader variable); name the variable your registry's client reads"
                )
        return self


class ModelChoice(Strict):
    """Which provider and model answer one step (analysis, plan, code, review)."""

    provider: Literal["anthropic", "openai", "scripted"] | None = None
    model: str | None = None


class Price(Strict):
    """USD per million tokens."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_read: float = Field(default=0.0, ge=0)
    cache_write: float = Field(default=0.0, ge=0)


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


class LLMSettings(Strict):
    provider: Literal["auto", "scripted", "anthropic", "openai"] = Field(
        default="auto", description="auto: anthropic with an Anthropic key, openai with a base URL or key"
    )
    model: str | None = Field(default=None, description="unset: the provider's default model")
    steps: dict[Literal["analysis", "plan", "code", "review"], ModelChoice] = Field(default_factory=dict)
    transcript: Path | None = Field(default=None, description="recording for the scripted provider")
    anthropic_api_key: Secret | None = None
    anthropic_base_url: str | None = None
    openai_api_key: Secret | None = None
    openai_base_url: str | None = None
    max_tokens: int = Field(default=8192, ge=256)
    timeout_s: float = Field(
        default=120.0, gt=0, description="connecting and a reply's start; a streamed reply may run longer"
    )
    idle_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="replies are streamed: the longest silence mid-reply before the call fails (and is "
        "retried); a long reply that keeps arriving is never cut off",
    )
    openai_stream: bool = Field(
        default=True,
        description="stream OpenAI-compatible replies (with usage chunks); a server that refuses a streamed "
        "request is asked again without, and no longer streamed to",
    )
    output_retries: int = Field(default=2, ge=0, description="re-asks after a malformed or empty answer")
    rate_limit_inline_s: float = Field(
        default=60.0,
        ge=0,
        description="a rate limit (429/529) is waited out inside the step up to this long; longer waits go to "
        "the workflow's durable timers (workflow.rate_limit_horizon_s)",
    )
    prices: dict[str, Price] = Field(default_factory=lambda: dict(DEFAULT_PRICES))
    record: bool = Field(default=True, description="record every exchange (secrets redacted)")


class NotifySettings(Strict):
    """Outgoing notifications when a task changes state, sent from an activity (retried, never
    blocking or failing the task): a generic signed webhook and/or a Slack incoming webhook."""

    webhook_url: str = Field(default="", description="POSTed a JSON event, signed with webhook_secret")
    webhook_secret: Secret | None = Field(default=None, description="HMAC-SHA256 key: X-Tamma-Signature-256")
    slack_webhook_url: Secret | None = Field(default=None, description="a Slack incoming-webhook URL (a secret)")
    on: list[str] = Field(
        default_factory=lambda: [
            "awaiting_approval",
            "parked",
            "merged",
            "pr_open",
            "rejected",
            "escalated",
            "failed",
            "budget_exceeded",
            "ci_failed",
            "cancelled",
        ],
        description="task statuses that notify",
    )
    timeout_s: float = Field(default=10.0, gt=0)

    @property
    def enabled(self) -> bool:
        return bool(self.webhook_url or self.slack_webhook_url)


class LoggingSettings(Strict):
    """Server, worker and `--debug` logs: JSON lines (or a human format on a terminal), each with
    its timestamp and context (task, repository, issue, activity, attempt, delivery, trace)."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "human"] = Field(
        default="auto", description="auto: human on a terminal, JSON lines otherwise"
    )


class PollingSettings(Strict):
    """Missed webhooks are caught: a Temporal Schedule per repository lists its open issues that
    are Tamma's and starts the ones without a task (the webhooks' workflow ids: never twice)."""

    enabled: bool = True
    interval_s: float = Field(default=300.0, ge=5, description="how often a GitHub/GitLab repository is polled")
    local_interval_s: float = Field(default=5.0, ge=1, description="how often a local repository is polled")
    repositories: list[str] = Field(
        default_factory=list,
        description="repositories to poll ('github:o/n', 'gitlab:g/p', 'local:/path'); empty: webhooks.repositories. "
        "A repository with no webhook works by polling alone",
    )


class WebhookSettings(Strict):
    github_secrets: list[Secret] = Field(default_factory=list, description="several during a rotation")
    gitlab_tokens: list[Secret] = Field(default_factory=list)
    bot_login: str = Field(default="tamma-bot", description="the bot's user on GitHub / GitLab")
    trigger_label: str = "tamma"
    authorized_associations: list[str] = Field(
        default_factory=lambda: ["OWNER", "MEMBER", "COLLABORATOR"],
        description="GitHub author associations whose /tamma commands, review comments and threads Tamma acts on",
    )
    authorized_gitlab_roles: list[str] = Field(
        default_factory=lambda: ["DEVELOPER", "MAINTAINER", "OWNER"],
        description="GitLab roles (GUEST, REPORTER, DEVELOPER, MAINTAINER, OWNER) whose review comments Tamma acts on",
    )
    authorized_users: list[str] = Field(
        default_factory=list, description="always allowed to command Tamma and to steer it through reviews"
    )
    repositories: list[str] = Field(
        default_factory=list, description="allowlist: 'github:owner/name', 'gitlab:group/project'"
    )
    max_body_bytes: int = 5 * 1024 * 1024
    rate_limit_per_min: int = Field(default=100, ge=1)


class ApiSettings(Strict):
    host: str = "0.0.0.0"
    port: int = 3000
    jwt_algorithm: Literal["HS256", "RS256", "ES256"] = "HS256"
    allow_unsandboxed_config: bool = Field(
        default=False,
        description="allow PUT /api/v1/config to set agent.sandbox.backend = none (only settable in the file)",
    )
    max_token_ttl_s: int = Field(
        default=90 * 24 * 3600, ge=60, description="the longest lifetime a token may have (minted or accepted)"
    )
    jwt_secret: Secret | None = Field(default=None, description="HS256 shared secret")
    jwt_public_key: str | None = Field(default=None, description="RS256/ES256: PEM text or a path to it")
    jwt_private_key: Secret | None = Field(
        default=None, description="RS256/ES256: PEM (or path) for `tamma token create`"
    )
    jwks_url: str | None = Field(
        default=None,
        description="verify tokens with the keys a team's identity provider publishes (its JWKS URL; RS256 or "
        "ES256, chosen by the token's kid); https, or http on this host",
    )
    access_token_ttl_s: int = Field(
        default=3600, ge=60, description="the lifetime of an access token a refresh session mints (POST /auth/refresh)"
    )
    refresh_token_ttl_s: int = Field(
        default=7 * 24 * 3600,
        ge=300,
        description="a refresh token's lifetime: a session with no refresh within it ends (`tamma token create "
        "--refresh`)",
    )
    session_max_s: int = Field(
        default=30 * 24 * 3600, ge=300, description="a refresh session's absolute lifetime, whatever its refreshes"
    )
    session_check_s: int = Field(
        default=15,
        ge=0,
        le=3600,
        description="an access token of a refresh session is refused within this many seconds of the session's "
        "revocation (each API replica looks the session up at most this often; 0: on every request)",
    )
    jwt_role_claim: str = Field(default="role", description="the claim holding viewer/operator/admin")
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    revoked_tokens: list[str] = Field(
        default_factory=list,
        description="token ids (jti, printed by `tamma token create`) refused from the next request on; a config "
        "reload applies it without a restart",
    )
    rate_limit_per_min: int = Field(
        default=300, ge=1, description="per client IP, for /api and /docs; webhooks have their own"
    )
    local_roots: list[Path] = Field(
        default_factory=list,
        description="local repositories under these directories may be started through the API; others "
        "only when named 'local:/path' in webhooks.repositories",
    )

    @model_validator(mode="after")
    def _keys_fit_the_algorithm(self) -> ApiSettings:
        if self.access_token_ttl_s > self.max_token_ttl_s:
            raise ValueError(
                f"api.access_token_ttl_s ({self.access_token_ttl_s}) exceeds api.max_token_ttl_s "
                f"({self.max_token_ttl_s}): the API would refuse the tokens it mints"
            )
        if self.refresh_token_ttl_s > self.session_max_s:
            raise ValueError(
                f"api.refresh_token_ttl_s ({self.refresh_token_ttl_s}) exceeds api.session_max_s ({self.session_max_s})"
            )
        if self.jwks_url is not None:
            if self.jwt_algorithm == "HS256":
                raise ValueError("api.jwks_url needs api.jwt_algorithm RS256 or ES256 (a JWKS holds public keys)")
            url = urlsplit(self.jwks_url)
            local = url.scheme == "http" and url.hostname in ("127.0.0.1", "localhost", "::1")
            if url.scheme != "https" and not local:
                raise ValueError(f"api.jwks_url {self.jwks_url!r} must be https (http only on this host)")
        return self


class TelemetrySettings(Strict):
    otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP collector, e.g. http://127.0.0.1:4318 (OTEL_EXPORTER_OTLP_ENDPOINT is read too); "
        "unset = no tracing",
    )
    service_name: str = Field(default="tamma", description="OTEL_SERVICE_NAME is read too")


class GitHubSettings(Strict):
    token: Secret | None = Field(default=None, description="a PAT; GITHUB_TOKEN is read too")
    app_id: int | None = Field(default=None, description="GitHub App auth instead of a token")
    app_private_key: Secret | None = Field(default=None, description="the App's PEM key (text or path)")
    installation_id: int | None = None
    base_url: str = Field(default="https://api.github.com", description="GitHub Enterprise: https://HOST/api/v3")
    git_url: str | None = Field(default=None, description="clone URL template with {repo}; default from base_url")
    merge_method: Literal["merge", "squash", "rebase"] = "squash"
    draft: bool = False
    timeout_s: float = 30.0


class GitLabSettings(Strict):
    token: Secret | None = Field(default=None, description="personal, project or group token; GITLAB_TOKEN too")
    base_url: str = "https://gitlab.com"
    git_url: str | None = Field(default=None, description="clone URL template with {repo}; default from base_url")
    squash: bool = True
    timeout_s: float = 30.0


# The merged config files reach settings_customise_sources (a classmethod pydantic calls for
# us) through this context variable, set by the loader around one construction.
FILE_VALUES: ContextVar[dict[str, Any] | None] = ContextVar("tamma_file_values", default=None)


class _FileValues(PydanticBaseSettingsSource):
    """The config files' values (base file, then the TAMMA_ENV file over it), already merged."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ answers for all fields at once

    def __call__(self) -> dict[str, Any]:
        return FILE_VALUES.get() or {}


class Settings(BaseSettings):
    """All of Tamma's settings. Precedence, strongest first: arguments (CLI flags), TAMMA_*
    environment variables, the TAMMA_ENV-specific file, the base file, defaults."""

    model_config = SettingsConfigDict(
        env_prefix="TAMMA_",
        env_nested_delimiter="__",
        env_parse_none_str="null",
        extra="forbid",
        validate_default=True,
    )

    data_dir: Path = Field(default_factory=lambda: Path(platformdirs.user_data_dir("tamma")))
    temporal: TemporalSettings = Field(default_factory=TemporalSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    agent: AgentSettings = Field(default_factory=AgentSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    approval: ApprovalPolicy = Field(default_factory=ApprovalPolicy)
    workflow: WorkflowOptions = Field(default_factory=WorkflowOptions)
    budget: Budget = Field(default_factory=Budget)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    polling: PollingSettings = Field(default_factory=PollingSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)
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
        return init_settings, env_settings, _FileValues(settings_cls)

    @model_validator(mode="after")
    def _coherent(self) -> Settings:
        """Rules across sections: what would otherwise validate here and fail at first use."""
        api, gh = self.api, self.github
        if api.jwt_algorithm == "RS256" and not api.jwt_public_key:
            raise ValueError("api.jwt_algorithm is RS256 but api.jwt_public_key is unset: set the PEM (or its path)")
        app = [gh.app_id is not None, gh.app_private_key is not None, gh.installation_id is not None]
        if any(app) and not all(app):
            raise ValueError(
                "github App auth needs all of github.app_id, github.app_private_key and github.installation_id"
            )
        for name, choice in self.llm.steps.items():
            if choice.provider == "scripted" and self.llm.transcript is None:
                raise ValueError(f"llm.steps.{name}.provider is scripted but llm.transcript is unset")
        return self

    def secrets(self) -> list[str]:
        """Every secret value Tamma holds (each SecretStr setting, found by walking the schema,
        so one declared tomorrow is covered too), for sandboxes and redaction to keep out."""
        return list(dict.fromkeys(secret_values(self)))

    def fingerprint(self) -> str:
        """A short digest of what a worker's behaviour depends on (secrets by their hash), which
        workers announce in their identity so a launcher can tell one runs with other settings,
        and which decides whether a config edit restarts them. Server-only settings stay out: the
        API section and the webhooks' secrets (rotating a webhook secret used to restart every
        worker); what workers do read of `webhooks` (bot login, whom to trust) and `notify` count."""
        sections = ("data_dir", "temporal", "worker", "agent", "llm", "github", "gitlab", "telemetry", "notify")
        worker_webhooks = self.webhooks.model_copy(update={"github_secrets": [], "gitlab_tokens": []})
        doc = self.model_dump(mode="json", include=set(sections))
        doc["webhooks"] = worker_webhooks.model_dump(mode="json")
        digest = hashlib.sha256(json.dumps(doc, sort_keys=True).encode())
        used = [getattr(self, s) for s in sections if isinstance(getattr(self, s), BaseModel)] + [worker_webhooks]
        for secret in sorted({v for model in used for v in secret_values(model)}):
            digest.update(hashlib.sha256(secret.encode()).digest())
        return digest.hexdigest()[:12]

    def task_options(self, **overrides: Any) -> TaskOptions:
        """A task's options: the workflow section, the approval policy and the budget, with this
        task's own choices on top; validated, so a bad override is an error here, not in a worker."""
        values = {
            **self.workflow.model_dump(),
            "policy": self.approval,
            "budget": self.budget,
            "notify_on": self.notify.on if self.notify.enabled else [],
            **overrides,
        }
        return TaskOptions.model_validate(values)
