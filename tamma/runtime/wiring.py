"""Building the activities from settings: which platform serves a repository, which provider
answers, where workspaces and artifacts go."""

from __future__ import annotations

from pathlib import Path

from tamma.activities import AgentConfig, IssueActivities
from tamma.activities.issue import PlatformFactory, ProviderFactory
from tamma.agent.sandbox import SandboxPolicy
from tamma.config import Settings
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
        raise ConfigError(f"the {repo.platform} platform is not built yet; only local repositories work")

    return make


def provider_description(settings: Settings, transcript: str | None) -> str:
    """What will answer, for the terminal; raises ConfigError when nothing can."""
    path = _transcript_path(settings, transcript)
    if path is not None:
        return f"scripted replay of {path.name} (a recording, not a model)"
    llm = settings.llm
    if llm.provider in ("anthropic", "openai") or (
        llm.provider == "auto" and (llm.anthropic_api_key or llm.openai_base_url)
    ):
        raise ConfigError(
            "the anthropic and openai providers are not built yet; pass --transcript RECORDING "
            "(or set llm.transcript) to replay a recorded run"
        )
    raise ConfigError(
        "no LLM provider is configured: set llm.transcript (TAMMA_LLM__TRANSCRIPT) to a recording, "
        "or pass --transcript; `tamma demo` runs with its built-in recording"
    )


def _transcript_path(settings: Settings, transcript: str | None) -> Path | None:
    if transcript:
        return Path(transcript)
    if settings.llm.provider in ("auto", "scripted") and settings.llm.transcript:
        return settings.llm.transcript
    return None


def provider_factory(settings: Settings) -> ProviderFactory:
    def make(transcript: str | None, session: int) -> LLMProvider:
        path = _transcript_path(settings, transcript)
        if path is None:
            try:
                provider_description(settings, transcript)
            except ConfigError as exc:
                raise ProviderError(exc.message, retryable=False) from None
            raise ProviderError("no provider", retryable=False)
        return ScriptedProvider(path, session)

    return make


def sandbox_policy(settings: Settings) -> SandboxPolicy:
    s = settings.agent.sandbox
    return SandboxPolicy(
        timeout_s=s.timeout_s, cpu_s=s.cpu_s, memory_mb=s.memory_mb, file_size_mb=s.file_size_mb, network=s.network
    )


def build_activities(settings: Settings) -> IssueActivities:
    config = AgentConfig(
        work_dir=settings.data_dir / "work",
        artifacts_dir=settings.data_dir / "artifacts",
        max_turns=settings.agent.max_turns,
        test_command=settings.agent.test_command,
        sandbox=sandbox_policy(settings),
        bot_name=settings.agent.bot_name,
        bot_email=settings.agent.bot_email,
    )
    return IssueActivities(platform_factory(settings), provider_factory(settings), config, settings.secrets())
