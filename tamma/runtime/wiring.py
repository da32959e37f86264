"""Building the activities from settings: which platform serves a repository, which provider
answers, where workspaces and artifacts go."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from tamma.activities import AgentConfig, IssueActivities
from tamma.activities.issue import PlatformFactory, ProviderFactory
from tamma.agent.safefs import private_dir
from tamma.config import DEFAULT_MODELS, ModelChoice, Settings
from tamma.errors import ConfigError, ProviderError
from tamma.models import RepoRef
from tamma.platforms.base import GitPlatform
from tamma.platforms.local import LocalPlatform
from tamma.providers.base import LLMProvider
from tamma.providers.scripted import ScriptedProvider


def platform_factory(settings: Settings) -> PlatformFactory:
    def make(repo: RepoRef) -> GitPlatform:
        if repo.platform == "local":
            return LocalPlatform(repo, settings.data_dir)
        if repo.platform == "github":
            from tamma.platforms.github import GitHubPlatform

            return GitHubPlatform(repo, settings.github, settings.webhooks.bot_login)
        from tamma.platforms.gitlab import GitLabPlatform

        return GitLabPlatform(repo, settings.gitlab, settings.webhooks.bot_login)

    return make


Step = Literal["analysis", "plan", "code", "review"]


def _choice(settings: Settings, step: Step, transcript: str | None) -> tuple[str, str | None]:
    """(provider, model) for a step: a replay wins, then llm.steps.<step>, then llm.provider."""
    llm = settings.llm
    if transcript:
        return "scripted", None
    chosen = llm.steps.get(step, ModelChoice())
    provider = chosen.provider or llm.provider
    if provider == "auto":
        if llm.anthropic_api_key:
            provider = "anthropic"
        elif llm.openai_base_url or llm.openai_api_key:
            provider = "openai"
        elif llm.transcript:
            provider = "scripted"
        else:
            raise ConfigError(
                "no LLM provider is configured: set ANTHROPIC_API_KEY (or llm.anthropic_api_key), or "
                "llm.openai_base_url for an OpenAI-compatible server, or pass --transcript RECORDING; "
                "`tamma demo` runs with its built-in recording"
            )
    return provider, chosen.model or llm.model or DEFAULT_MODELS.get(provider)


def make_provider(settings: Settings, step: Step, transcript: str | None, session: int) -> LLMProvider:
    provider, model = _choice(settings, step, transcript)
    llm = settings.llm
    if provider == "scripted":
        path = Path(transcript) if transcript else llm.transcript
        if path is None:
            raise ConfigError("llm.provider is scripted but no transcript is set: set llm.transcript or --transcript")
        return ScriptedProvider(path, session)
    assert model is not None
    common: dict[str, Any] = {
        "model": model,
        "max_tokens": llm.max_tokens,
        "timeout_s": llm.timeout_s,
        "output_retries": llm.output_retries,
        "price": llm.prices.get(model),
        "rate_limit_inline_s": llm.rate_limit_inline_s,
    }
    # The vendor SDKs take about a second to import: only pay for the one in use.
    if provider == "anthropic":
        from tamma.providers.anthropic import AnthropicProvider

        if llm.anthropic_api_key is None:
            raise ConfigError("the anthropic provider needs a key: set ANTHROPIC_API_KEY or llm.anthropic_api_key")
        return AnthropicProvider(
            api_key=llm.anthropic_api_key.get_secret_value(),
            base_url=llm.anthropic_base_url,
            idle_timeout_s=llm.idle_timeout_s,
            **common,
        )
    from tamma.providers.openai import OpenAIProvider

    key = llm.openai_api_key.get_secret_value() if llm.openai_api_key else None
    if key is None and llm.openai_base_url is None:
        raise ConfigError("the openai provider needs OPENAI_API_KEY or llm.openai_base_url (a local server)")
    return OpenAIProvider(
        api_key=key,
        base_url=llm.openai_base_url,
        idle_timeout_s=llm.idle_timeout_s,
        stream=llm.openai_stream,
        **common,
    )


def provider_description(settings: Settings, transcript: str | None) -> str:
    """What will answer, for the terminal; raises ConfigError when nothing can."""
    parts: list[str] = []
    steps: tuple[Step, ...] = ("analysis", "plan", "code")
    for step in steps:
        provider = make_provider(settings, step, transcript, 1)
        if provider.description not in parts:
            parts.append(provider.description)
    return "; ".join(parts)


def provider_factory(settings: Settings) -> ProviderFactory:
    def make(step: str, transcript: str | None, session: int) -> LLMProvider:
        try:
            return make_provider(settings, step, transcript, session)  # type: ignore[arg-type]
        except ConfigError as exc:
            raise ProviderError(exc.message, retryable=False) from None

    return make


def build_activities(settings: Settings) -> IssueActivities:
    private_dir(settings.data_dir)
    config = AgentConfig(
        work_dir=settings.data_dir / "work",
        artifacts_dir=settings.data_dir / "artifacts",
        envs_dir=settings.data_dir / "envs",
        agent=settings.agent,
        min_free_mb=settings.worker.min_free_mb,
        min_free_inodes=settings.worker.min_free_inodes,
    )
    return IssueActivities(
        platform_factory(settings),
        provider_factory(settings),
        config,
        settings.secrets(),
        record=settings.llm.record,
        output_retries=settings.llm.output_retries,
        notify=settings.notify,
        trust=settings.webhooks,
    )


def detect_repo(settings: Settings, path: Path | str) -> RepoRef:
    """Which forge a working copy belongs to: GitHub or GitLab when its `origin` points at one
    Tamma has credentials for, else the local platform. An allowlist, when set, must name it."""
    from tamma.platforms.local import local_repo_ref, remote_url

    local = local_repo_ref(path)
    url = remote_url(Path(local.locator))
    ref = local
    if url:
        gh_host = _host(settings.github.base_url.replace("api.github.com", "github.com"))
        gl_host = _host(settings.gitlab.base_url)
        host, name = _parse_remote(url)
        if host and name and host == gh_host and (settings.github.token or settings.github.app_id):
            ref = RepoRef(platform="github", locator=name)
        elif host and name and host == gl_host and settings.gitlab.token:
            ref = RepoRef(platform="gitlab", locator=name)
    allowed = settings.webhooks.repositories
    if ref.platform != "local" and allowed and ref.key not in allowed and ref.locator not in allowed:
        raise ConfigError(f"{ref.key} is not in webhooks.repositories, the list of repositories Tamma may act on")
    return ref


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url if "://" in url else f"https://{url}")
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{host}{port}"


def _parse_remote(url: str) -> tuple[str, str]:
    """(host, owner/name) from https://host/owner/name(.git) or git@host:owner/name(.git)."""
    from urllib.parse import urlsplit

    if "://" in url:
        parts = urlsplit(url)
        host = f"{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"
        path = parts.path
    elif ":" in url and "@" in url.split(":", 1)[0]:
        userhost, path = url.split(":", 1)
        host = userhost.split("@", 1)[1]
    else:
        return "", ""
    name = path.strip("/").removesuffix(".git")
    return host, name if "/" in name else ""
