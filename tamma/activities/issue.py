"""Thin Temporal activities over the platform, the provider and the coding agent.

Each is idempotent: a retry after a crash finds what the earlier attempt made (branch, pushed
commit, pull request, merge) and returns it rather than making it twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from temporalio import activity

from tamma import activity_names as names
from tamma.activities.errors import temporal_errors
from tamma.activities.heartbeat import earlier_usage, heartbeating, report_progress
from tamma.activities.notify import Notifier
from tamma.agent import prompts
from tamma.agent.environment import Environment, lockfile_digest, prepare_environment, run_in_environment
from tamma.agent.loop import run_agent
from tamma.agent.safefs import copy_tree, write_file
from tamma.agent.sandbox import CommandResult
from tamma.agent.testing import resolve_test_command
from tamma.agent.tools import Toolbox
from tamma.agent.workspace import MAX_LISTED_FILES, Workspace
from tamma.config import AgentSettings
from tamma.config.schema import NotifySettings, WebhookSettings
from tamma.errors import ProviderError, SandboxError, TammaError
from tamma.models import (
    AnalyseInput,
    AnalyseOutput,
    Analysis,
    BranchInput,
    CIStatus,
    CommentInput,
    ImplementInput,
    ImplementResult,
    Issue,
    IssueRef,
    MergeResult,
    OpenPRInput,
    Plan,
    PlanInput,
    PlanOutput,
    PollInput,
    PRRef,
    PullRequest,
    ReplyInput,
    RepoRef,
    ReviewComment,
    SelfReview,
    SelfReviewInput,
    SelfReviewResult,
    TestInput,
    TestReport,
    Usage,
)
from tamma.platforms.base import GitPlatform
from tamma.policy import untrusted_reason
from tamma.providers.base import LLMProvider
from tamma.providers.recording import RecordingProvider
from tamma.providers.scripted import ScriptedProvider
from tamma.redact import Redactor

log = logging.getLogger(__name__)

PlatformFactory = Callable[[RepoRef], GitPlatform]
#: (step: analysis/plan/code, transcript path or None, coding session number) -> provider
ProviderFactory = Callable[[str, str | None, int], LLMProvider]


class AgentConfig(BaseModel):
    """Where a worker keeps its files, and the agent's settings (one declaration: AgentSettings)."""

    work_dir: Path
    artifacts_dir: Path
    envs_dir: Path
    agent: AgentSettings = AgentSettings()


class IssueActivities:
    """Built with its clients, so tests pass a local platform or a flaky wrapper, no patching."""

    def __init__(
        self,
        platforms: PlatformFactory,
        providers: ProviderFactory,
        config: AgentConfig,
        secrets: Sequence[str] = (),
        record: bool = True,
        output_retries: int = 2,
        notify: NotifySettings | None = None,
        trust: WebhookSettings | None = None,
    ) -> None:
        self.trust = trust or WebhookSettings()
        self.notifier = Notifier(notify or NotifySettings())
        self.platforms = platforms
        self.providers = providers
        self.config = config
        self.redactor = Redactor(secrets)
        self.record = record
        self.output_retries = output_retries

    def _provider(self, step: str, repo: RepoRef, issue: int, transcript: str | None, session: int) -> LLMProvider:
        """The step's provider; real ones are wrapped so every exchange is recorded (redacted)."""
        provider = self.providers(step, transcript, session)
        if not self.record or isinstance(provider, ScriptedProvider):
            return provider
        attempt = activity.info().attempt if activity.in_activity() else 1
        path = self._artifact(repo, issue, f"{step}-s{session}-a{attempt}.json")
        return RecordingProvider(provider, path, session, self.redactor.values)

    def all(self) -> list[Callable[..., object]]:
        return [
            self.fetch_issue,
            self.analyse,
            self.plan,
            self.create_branch,
            self.open_pr,
            self.ci_status,
            self.review_comments,
            self.reply_to_reviews,
            self.merge,
            self.comment_issue,
            self.update_progress,
        ]

    def polling(self) -> list[Callable[..., object]]:
        return [self.poll_candidates, self.notifier.notify]

    def heavy(self) -> list[Callable[..., object]]:
        return [self.implement, self.run_tests, self.self_review]

    # ---- light steps -------------------------------------------------------------------------

    @activity.defn(name=names.FETCH_ISSUE)
    @temporal_errors
    @heartbeating
    async def fetch_issue(self, ref: IssueRef) -> Issue:
        return await self.platforms(ref.repo).get_issue(ref.number)

    @activity.defn(name=names.ANALYSE)
    @temporal_errors
    @heartbeating
    async def analyse(self, inp: AnalyseInput) -> AnalyseOutput:
        provider = self._provider("analysis", inp.repo, inp.issue.number, inp.transcript, inp.session)
        async with _spending(provider) as spent:
            analysis = await provider.structured(
                "analysis", prompts.ANALYSE_SYSTEM, prompts.analyse_prompt(inp.issue), Analysis
            )
        return AnalyseOutput(analysis=analysis, usage=spent(), transcript_path=_path_of(provider))

    @activity.defn(name=names.PLAN)
    @temporal_errors
    @heartbeating
    async def plan(self, inp: PlanInput) -> PlanOutput:
        provider = self._provider("plan", inp.repo, inp.issue.number, inp.transcript, inp.session)
        async with _spending(provider) as spent:
            plan = await provider.structured(
                "plan", prompts.PLAN_SYSTEM, prompts.plan_prompt(inp.issue, inp.analysis), Plan
            )
        return PlanOutput(plan=plan, usage=spent(), transcript_path=_path_of(provider))

    @activity.defn(name=names.CREATE_BRANCH)
    @temporal_errors
    @heartbeating
    async def create_branch(self, inp: BranchInput) -> str:
        platform = self.platforms(inp.repo)
        return await platform.ensure_branch(inp.branch, await platform.default_branch())

    @activity.defn(name=names.OPEN_PR)
    @temporal_errors
    @heartbeating
    async def open_pr(self, inp: OpenPRInput) -> PullRequest:
        platform = self.platforms(inp.repo)
        steps = "\n".join(f"- {s.title}" for s in inp.plan.steps)
        body = f"Fixes #{inp.issue.number}\n\n{inp.plan.summary}\n\n{steps}\n\n_Opened by Tamma._"
        title = f"{inp.issue.title} (#{inp.issue.number})"
        return await platform.create_pull_request(inp.branch, await platform.default_branch(), title, body)

    @activity.defn(name=names.CI_STATUS)
    @temporal_errors
    @heartbeating
    async def ci_status(self, ref: PRRef) -> CIStatus:
        platform = self.platforms(ref.repo)
        return await platform.ci_status(await platform.get_pull_request(ref.pr_number))

    @activity.defn(name=names.REPLY_TO_REVIEWS)
    @temporal_errors
    @heartbeating
    async def reply_to_reviews(self, inp: ReplyInput) -> int:
        platform = self.platforms(inp.repo)
        return await platform.reply_to_reviews(await platform.get_pull_request(inp.pr_number), inp.comments, inp.commit)

    @activity.defn(name=names.REVIEW_COMMENTS)
    @temporal_errors
    @heartbeating
    async def review_comments(self, ref: PRRef) -> list[ReviewComment]:
        """The review feedback the agent may act on: from people the policy trusts only; the
        rest is left out and logged with the reason (a passer-by must not steer the agent)."""
        platform = self.platforms(ref.repo)
        comments = await platform.review_comments(await platform.get_pull_request(ref.pr_number))
        t = self.trust
        kept: list[ReviewComment] = []
        for c in comments:
            why = untrusted_reason(
                c, ref.repo.platform, t.authorized_associations, t.authorized_gitlab_roles, t.authorized_users
            )
            if why:
                log.warning("ignoring review comment %s on %s!%s: %s", c.id, ref.repo.key, ref.pr_number, why)
            else:
                kept.append(c)
        return kept

    @activity.defn(name=names.MERGE)
    @temporal_errors
    @heartbeating
    async def merge(self, ref: PRRef) -> MergeResult:
        return await self.platforms(ref.repo).merge_pull_request(ref.pr_number, ref.head_sha)

    @activity.defn(name=names.COMMENT)
    @temporal_errors
    @heartbeating
    async def comment_issue(self, inp: CommentInput) -> None:
        platform = self.platforms(inp.repo)
        if inp.pull_request:
            await platform.comment_pull_request(inp.issue_number, inp.body)
        else:
            await platform.comment_issue(inp.issue_number, inp.body)

    @activity.defn(name=names.POLL_CANDIDATES)
    @temporal_errors
    @heartbeating
    async def poll_candidates(self, inp: PollInput) -> list[int]:
        """Open issues assigned to the bot or labelled for Tamma, oldest first (the order they
        would have arrived as webhooks)."""
        bot, label = inp.bot_login.lower(), inp.trigger_label.lower()
        issues = await self.platforms(inp.repo).open_issues(inp.limit)
        mine = [
            i.number
            for i in issues
            if i.state == "open"
            and (
                (bot and bot in (a.lower() for a in i.assignees)) or (label and label in (x.lower() for x in i.labels))
            )
        ]
        return sorted(mine)

    @activity.defn(name=names.PROGRESS)
    @temporal_errors
    @heartbeating
    async def update_progress(self, inp: CommentInput) -> None:
        await self.platforms(inp.repo).upsert_progress(inp.issue_number, inp.body)

    # ---- heavy steps (own task queue, heartbeating) ------------------------------------------

    @activity.defn(name=names.IMPLEMENT)
    @temporal_errors
    @heartbeating
    async def implement(self, inp: ImplementInput) -> ImplementResult:
        platform = self.platforms(inp.repo)
        async with self._workspace(platform, inp.branch) as ws:
            if await ws.head_iteration() == inp.iteration:
                # An earlier attempt pushed this iteration and died before reporting it.
                return ImplementResult(
                    commit=await ws.head(), reused=True, summary="already pushed",
                    **await _branch_listing(ws, await platform.default_branch()),
                )  # fmt: skip
            provider = self._provider("code", inp.repo, inp.issue.number, inp.transcript, inp.iteration)
            toolbox = Toolbox(ws, self._test_runner(inp.repo, ws, await platform.default_branch()), self.redactor)
            async with _spending(provider) as spent:
                outcome = await run_agent(
                    provider,
                    toolbox,
                    prompts.CODE_SYSTEM,
                    prompts.code_prompt(inp.issue, inp.plan, inp.feedback),
                    self.config.agent.max_turns,
                    lambda turn, what: report_progress(lambda: {"usage": spent().model_dump(), "turn": turn}, now=True),
                    budget=inp.budget_left,
                    output_retries=self.output_retries,
                )
                changed = await ws.changed_files()
                message = f"{inp.issue.title} (#{inp.issue.number})\n\n{outcome.summary}"
                agent = self.config.agent
                sha = await ws.commit_and_push(message, inp.iteration, agent.bot_name, agent.bot_email)
                if sha is None:
                    raise ProviderError(
                        f"the coding agent finished iteration {inp.iteration} without changing any file",
                        retryable=False,
                    )
                return ImplementResult(
                    commit=sha,
                    changed_files=changed,
                    summary=outcome.summary[:2000],
                    turns=outcome.turns,
                    transcript_path=_path_of(provider),
                    usage=spent().model_copy(update={"agent_turns": outcome.turns}),
                    **await _branch_listing(ws, await platform.default_branch()),
                )

    @activity.defn(name=names.SELF_REVIEW)
    @temporal_errors
    @heartbeating
    async def self_review(self, inp: SelfReviewInput) -> SelfReviewResult:
        """A model reads the branch's diff against the default branch and approves it or lists
        what must change. Read-only: nothing is pushed, so a retry repeats nothing."""
        platform = self.platforms(inp.repo)
        base = await platform.default_branch()
        async with self._workspace(platform, inp.branch) as ws:
            diff, truncated = await ws.diff_from(base, self.config.agent.review_diff_bytes)
        diff = self.redactor(diff)
        provider = self._provider("review", inp.repo, inp.issue.number, inp.transcript, inp.iteration)
        prompt = prompts.review_prompt(inp.issue, inp.plan, diff, truncated)
        async with _spending(provider) as spent:
            review = await provider.structured("review", prompts.REVIEW_SYSTEM, prompt, SelfReview)
        return SelfReviewResult(
            review=review, diff_bytes=len(diff.encode()), usage=spent(), transcript_path=_path_of(provider)
        )

    @activity.defn(name=names.RUN_TESTS)
    @temporal_errors
    @heartbeating
    async def run_tests(self, inp: TestInput) -> TestReport:
        platform = self.platforms(inp.repo)
        async with self._workspace(platform, inp.branch) as ws:
            command = resolve_test_command(ws.root, self.config.agent.test_command)
            result = await self._test_runner(inp.repo, ws, await platform.default_branch())()
            log_path = self._artifact(inp.repo, 0, f"tests-{inp.commit[:12]}.log")
            write_file(log_path, result.output.encode())
            report = TestReport(
                passed=result.exit_code == 0,
                command=command,
                exit_code=result.exit_code,
                summary=_summarise(result.output, result.exit_code, result.timed_out),
                output_tail=result.output[-3000:],
                duration_s=round(result.duration_s, 3),
                isolation=result.isolation,
            )
            await platform.report_tests(await ws.head(), report)
            return report

    def _test_runner(self, repo: RepoRef, ws: Workspace, base: str) -> Callable[[], Awaitable[CommandResult]]:
        """Run the repository's tests in the sandbox; the first call prepares (or reuses) the
        repository's environment. Output comes back redacted. After every sandboxed run, a
        change to .git or a nested repository fails the step before anything is staged."""
        agent = self.config.agent
        environment: list[Environment] = []

        async def run() -> CommandResult:
            if not environment:
                environment.append(await self._environment(repo, ws, base))
            command = resolve_test_command(ws.root, agent.test_command)
            before = ws.git_fingerprint()
            result = await run_in_environment(command, ws.root, environment[0], agent.sandbox, self.redactor)
            if ws.git_fingerprint() != before:
                raise SandboxError(
                    "code run for the tests changed the workspace's .git (config, hooks or info): refusing to "
                    "commit from it; this is an attack or a broken test suite",
                    retryable=False,
                )
            ws.refuse_nested_git()
            return result

        return run

    async def _environment(self, repo: RepoRef, ws: Workspace, base: str) -> Environment:
        """The repository's environment, set up from a pristine export of the base commit and
        shared between tasks; or, when this task's edits changed a lockfile or the setup
        script, from a copy of its own tree and keyed to this task alone."""
        agent = self.config.agent
        self.config.work_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="src-", dir=self.config.work_dir) as tmp:
            source, scope = Path(tmp) / "base", ""
            await ws.export(await ws.fetch_base(base), source)
            if lockfile_digest(source) != lockfile_digest(ws.root):
                ws.refuse_nested_git()
                source, scope = Path(tmp) / "task", f"{repo.key}:{ws.branch}"
                await asyncio.to_thread(copy_tree, ws.root, source)
            return await prepare_environment(
                source,
                repo.key,
                agent.setup_command,
                self.config.envs_dir,
                agent.sandbox,
                self.redactor,
                agent.setup_allow_hosts,
                scope,
            )

    @asynccontextmanager
    async def _workspace(self, platform: GitPlatform, branch: str) -> AsyncIterator[Workspace]:
        git_env = platform.git_env()
        self.redactor.add(*(v for k, v in git_env.items() if k.startswith("GIT_CONFIG_VALUE")))
        ws = await Workspace.clone(platform.clone_url(), branch, self.config.work_dir, git_env)
        try:
            yield ws
        finally:
            ws.remove()

    def _artifact(self, repo: RepoRef, issue: int, name: str) -> Path:
        # The slug is readable; the digest makes it injective (`a/b_c` and `a_b/c` differ).
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", repo.key).strip("_")[-60:]
        digest = hashlib.sha256(repo.key.encode()).hexdigest()[:12]
        folder = self.config.artifacts_dir / f"{slug}-{digest}" / (f"issue-{issue}" if issue else "runs")
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        return folder / name


@asynccontextmanager
async def _spending(provider: LLMProvider) -> AsyncIterator[Callable[[], Usage]]:
    """Model usage of this attempt plus what earlier attempts reported in their heartbeats: in
    every heartbeat from now on, in the result, and on a failure (so the workflow counts it)."""
    earlier = earlier_usage()

    def total() -> Usage:
        return earlier.plus(provider.usage)

    report_progress(lambda: {"usage": total().model_dump()})
    try:
        yield total
    except TammaError as exc:
        exc.usage = total().model_dump()
        raise


async def _branch_listing(ws: Workspace, base: str) -> dict[str, Any]:
    """The branch's changed paths for the blocked-path gate: listed up to what history can carry,
    with the true count so that the gate fails closed on what was not listed."""
    changes = await ws.branch_changes(base)
    return {"branch_files": changes.files[:MAX_LISTED_FILES], "branch_files_total": changes.total}


def _path_of(provider: LLMProvider) -> str:
    return str(provider.path) if isinstance(provider, RecordingProvider) else ""


def _summarise(output: str, exit_code: int, timed_out: bool) -> str:
    if timed_out:
        return "timed out"
    for line in reversed(output.strip().splitlines()):
        if re.search(r"\b(passed|failed|error|OK|FAILED|Ran \d+ tests?)\b", line):
            return f"{line.strip()[:200]} (exit {exit_code})"
    return f"exit {exit_code}"
