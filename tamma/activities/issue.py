"""Thin Temporal activities over the platform, the provider and the coding agent.

Each is idempotent: a retry after a crash finds what the earlier attempt made (branch, pushed
commit, pull request, merge) and returns it rather than making it twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from temporalio import activity

from tamma import activity_names as names
from tamma.activities.errors import temporal_errors
from tamma.activities.heartbeat import earlier_checkpoint, earlier_usage, heartbeating, report_progress
from tamma.activities.notify import Notifier
from tamma.agent import prompts
from tamma.agent.checkpoint import restore, resume_note, take
from tamma.agent.condense import ContextPolicy
from tamma.agent.environment import (
    SCM_PLACEHOLDER,
    Environment,
    lockfile_digest,
    prepare_environment,
    run_in_environment,
)
from tamma.agent.loop import run_agent
from tamma.agent.repomap import missing_files, repo_map
from tamma.agent.results import (
    Baseline,
    TestCounts,
    Verdict,
    broken_environment,
    hung_test,
    judge,
    parse_results,
)
from tamma.agent.safefs import copy_tree, private_dir, write_file
from tamma.agent.sandbox import CommandResult
from tamma.agent.testing import TestCommand, detect_test_command, lfs_patterns, read_guidance, submodule_paths
from tamma.agent.tools import Toolbox
from tamma.agent.workspace import MAX_LISTED_FILES, Workspace
from tamma.config import AgentSettings
from tamma.config.schema import NotifySettings, WebhookSettings
from tamma.errors import EnvironmentBroken, ProviderError, SandboxError, TammaError
from tamma.models import (
    AnalyseInput,
    AnalyseOutput,
    Analysis,
    BranchInput,
    CIStatus,
    CIWaitInput,
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
from tamma.runtime.disk import unusable

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
    min_free_mb: int = 0  # below it (or a data dir that cannot be written) no heavy step starts here
    min_free_inodes: int = 0


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
        #: told why, when this worker's disk cannot take a heavy step (it then stops polling for them)
        self.on_sick: Callable[[str], None] | None = None

    def _fit_for_heavy_work(self) -> None:
        """Before a heavy step: a worker whose data dir is read-only or full takes itself out of
        the heavy queue and hands the step back (retryable), so another worker runs it."""
        why = unusable(
            [self.config.work_dir, self.config.envs_dir], self.config.min_free_mb, self.config.min_free_inodes
        )
        if why is None:
            return
        log.error("this worker takes no more heavy steps: %s", why)
        if self.on_sick is not None:
            self.on_sick(why)
        raise SandboxError(f"worker cannot run heavy steps here ({why}); another worker takes this one", retryable=True)

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
            self.wait_for_ci,
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
        async with self._default_branch(inp.repo) as ws:
            mapped = await asyncio.to_thread(repo_map, ws.root, f"{inp.issue.title}\n{inp.issue.body}")
        async with _spending(provider) as spent:
            analysis = await provider.structured(
                "analysis", prompts.ANALYSE_SYSTEM, prompts.analyse_prompt(inp.issue, mapped), Analysis
            )
        return AnalyseOutput(analysis=analysis, usage=spent(), transcript_path=_path_of(provider))

    @activity.defn(name=names.PLAN)
    @temporal_errors
    @heartbeating
    async def plan(self, inp: PlanInput) -> PlanOutput:
        """A plan made from the repository's map; one that names files which do not exist (and
        are not new files in existing folders) is asked for again, once, saying which."""
        provider = self._provider("plan", inp.repo, inp.issue.number, inp.transcript, inp.session)
        async with self._default_branch(inp.repo) as ws, _spending(provider) as spent:
            mapped = await asyncio.to_thread(repo_map, ws.root, f"{inp.issue.title}\n{inp.issue.body}")
            prompt = prompts.plan_prompt(inp.issue, inp.analysis, mapped)
            plan = await provider.structured("plan", prompts.PLAN_SYSTEM, prompt, Plan)
            missing = missing_files(ws.root, plan.files)
            if missing:
                problem = f"these files do not exist and are not in an existing folder: {', '.join(missing[:20])}"
                again = prompts.plan_prompt(inp.issue, inp.analysis, mapped, problem)
                plan = await provider.structured("plan", prompts.PLAN_SYSTEM, again, Plan)
                if missing_files(ws.root, plan.files):
                    log.warning("the plan for %s still names missing files: %s", inp.repo.key, plan.files)
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
        tests = f"\n\n**Tests**\n{inp.tests}" if inp.tests else ""
        body = f"Fixes #{inp.issue.number}\n\n{inp.plan.summary}\n\n{steps}{tests}\n\n_Opened by Tamma._"
        title = f"{inp.issue.title} (#{inp.issue.number})"
        return await platform.create_pull_request(
            inp.branch, await platform.default_branch(), title, body, draft=inp.draft
        )

    @activity.defn(name=names.CI_STATUS)
    @temporal_errors
    @heartbeating
    async def ci_status(self, ref: PRRef) -> CIStatus:
        platform = self.platforms(ref.repo)
        return await platform.ci_status(await platform.get_pull_request(ref.pr_number))

    @activity.defn(name=names.WAIT_FOR_CI)
    @temporal_errors
    @heartbeating
    async def wait_for_ci(self, inp: CIWaitInput) -> CIStatus:
        """Poll CI until a verdict (success, or a failure not on the stale commit) or the timeout
        (then the last status, still pending). One activity however long CI takes: polling in the
        workflow cost ~11 history events a poll, and a task's history has a hard limit."""
        platform = self.platforms(inp.repo)
        deadline = time.monotonic() + inp.timeout_s
        status = CIStatus(state="pending", detail="not asked yet")
        report_progress(lambda: {"ci": status.detail[:200]})
        while True:
            try:
                status = await platform.ci_status(await platform.get_pull_request(inp.pr_number))
            except TammaError as exc:
                if not exc.retryable:
                    raise
                status = CIStatus(state="pending", detail=f"the forge did not answer: {exc.message[:200]}")
            if status.state == "success" or (status.state == "failure" and not (inp.stale and status.sha == inp.stale)):
                return status
            left = deadline - time.monotonic()
            if left <= 0:
                return status.model_copy(update={"state": "pending"})
            await asyncio.sleep(min(inp.poll_s, left))

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
        self._fit_for_heavy_work()
        platform = self.platforms(inp.repo)
        async with self._workspace(platform, inp.branch) as ws:
            if await ws.head_iteration() == inp.iteration:
                # An earlier attempt pushed this iteration and died before reporting it.
                return ImplementResult(
                    commit=await ws.head(), reused=True, summary="already pushed",
                    **await _branch_listing(ws, await platform.default_branch()),
                )  # fmt: skip
            runner = _TestRunner(self, inp.repo, ws, await platform.default_branch())
            # The base commit's tests first: an environment that cannot test stops here, as a
            # setup problem, before the model is asked to change anything.
            prepared = await runner.prepared()
            provider = self._provider("code", inp.repo, inp.issue.number, inp.transcript, inp.iteration)
            toolbox = Toolbox(ws, runner, self.redactor, run_command=runner.run_command)
            # An earlier attempt's edits (agent.checkpoint): restored, and the model told. Not in
            # a replay, which must ask exactly what its recording holds.
            before = earlier_checkpoint(inp.iteration) if not inp.transcript else None
            resume = ""
            if before is not None and before.files:
                restored = await asyncio.to_thread(restore, before, ws.resolve)
                toolbox.written.update(p for p in restored if before.files.get(p) is not None)
                resume = "\n\n" + resume_note(before, restored)
                log.info("resumed %s iteration %s from its checkpoint: %s", inp.repo.key, inp.iteration, restored)
            progress: dict[str, Any] = {"turn": 0, "checkpoint": before.model_dump() if before else None}
            prior_turns = before.turns if before else 0
            async with _spending(provider) as spent:

                def report() -> dict[str, Any]:
                    out = {"usage": spent().model_dump(), "turn": progress["turn"]}
                    return out | ({"checkpoint": progress["checkpoint"]} if progress["checkpoint"] else {})

                def turned(turn: int, what: str) -> None:
                    progress["turn"] = turn
                    report_progress(report, now=True)

                async def keep(turn: int, note: str) -> None:
                    touched = {*await ws.edited_files(), *toolbox.written}
                    if touched:
                        cp = take(ws.root, touched, inp.iteration, prior_turns + turn, note, self.redactor)
                        progress["checkpoint"] = cp.model_dump()
                        report_progress(report, now=True)

                outcome = await run_agent(
                    provider,
                    toolbox,
                    prompts.CODE_SYSTEM,
                    prompts.code_prompt(
                        inp.issue, inp.plan, inp.feedback, prepared.baseline.for_prompt(), prepared.guidance
                    )
                    + resume,
                    self.config.agent.max_turns,
                    turned,
                    budget=inp.budget_left,
                    output_retries=self.output_retries,
                    already=earlier_usage(),
                    context=ContextPolicy(self.config.agent.context_window_tokens, self.config.agent.condense_at),
                    checkpoint=keep,
                )
                changed, left_out = await ws.stage(toolbox.written)
                if left_out:
                    log.info(
                        "new files the agent did not write left out of the commit on %s: %s",
                        inp.repo.key, ", ".join(left_out[:20]),
                    )  # fmt: skip
                message = f"{inp.issue.title} (#{inp.issue.number})\n\n{outcome.summary}"
                agent = self.config.agent
                sha = await ws.commit_and_push(
                    message, inp.iteration, agent.bot_name, agent.bot_email, intended=toolbox.written
                )
                if sha is None:
                    raise ProviderError(
                        f"the coding agent finished iteration {inp.iteration} without changing any file",
                        retryable=False,
                    )
                return ImplementResult(
                    commit=sha,
                    changed_files=changed[:MAX_LISTED_FILES],
                    left_out=left_out[:100],
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
        self._fit_for_heavy_work()
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
        """The gate: the base commit's test command on the branch, judged against its run on the
        base commit (tests ran; nothing that passed there fails; a failure that was already there
        is not blamed on the change, but leaving every one of them as it was fixes nothing)."""
        self._fit_for_heavy_work()
        platform = self.platforms(inp.repo)
        base = await platform.default_branch()
        async with self._workspace(platform, inp.branch) as ws:
            runner = _TestRunner(self, inp.repo, ws, base)
            prepared = await runner.prepared()
            result = await runner.run_once()
            if prepared.command is None:
                verdict = Verdict(passed=True, untested=True, summary=prepared.baseline.summary)
                counts = TestCounts()
            else:
                counts = parse_results(result.output)
                touched = any(_TEST_PATH.search(f) for f in (await ws.branch_changes(base)).files)
                verdict = judge(
                    counts, result.exit_code, prepared.baseline.counts, touched, prepared.baseline.exit_code
                )
                if verdict.regressions and not result.timed_out:
                    # once more: a test that passes on a second run is flaky, not the change's
                    again = await runner.run_once()
                    second = judge(
                        parse_results(again.output), again.exit_code, prepared.baseline.counts, touched,
                        prepared.baseline.exit_code,
                    )  # fmt: skip
                    flaky = sorted(set(verdict.regressions) - set(second.regressions))
                    if flaky:
                        log.warning("flaky on %s: %s", inp.repo.key, ", ".join(flaky[:20]))
                        result, verdict = again, second
                        verdict.summary += f" (re-run: {len(flaky)} flaky test(s) passed the second time)"
            log_path = self._artifact(inp.repo, 0, f"tests-{inp.commit[:12]}.log")
            write_file(log_path, result.output.encode())
            report = TestReport(
                passed=verdict.passed,
                command=prepared.command or "",
                exit_code=result.exit_code,
                summary=_summarise(verdict.summary, result.exit_code, result.timed_out, result.output),
                output_tail=result.output[-3000:],
                duration_s=round(result.duration_s, 3),
                isolation=result.isolation,
                tests_ran=counts.ran,
                untested=verdict.untested,
                regressions=verdict.regressions[:200],
                preexisting=verdict.preexisting[:200],
                fixed=verdict.fixed[:200],
                baseline=prepared.baseline.summary,
                command_source=prepared.why,
            )
            await platform.report_tests(await ws.head(), report)
            return report

    async def prepare_tests(self, repo: RepoRef, ws: Workspace, base: str) -> Prepared:
        """On a pristine export of the base commit: which command tests the repository (detected
        there, never on the model's tree), its environment, and its baseline run (cached per
        base commit and configuration). When this task's edits changed a lockfile or the setup
        script, the task's own runs get an environment built from its tree, keyed to it alone."""
        agent = self.config.agent
        private_dir(self.config.work_dir)
        with tempfile.TemporaryDirectory(prefix="src-", dir=self.config.work_dir) as tmp:
            base_sha = await ws.fetch_base(base)
            source = Path(tmp) / "base"
            await ws.export(base_sha, source)
            version = await ws.version_tag(base_sha) or SCM_PLACEHOLDER  # for projects versioned from tags
            found = detect_test_command(source, agent.test_command)
            guidance = read_guidance(source)
            baseline = self._cached_baseline(repo, base_sha, found)
            own_env = lockfile_digest(source) != lockfile_digest(ws.root)
            shared: Environment | None = None
            if baseline is None or not own_env:
                shared = await self._build(repo, source, "", version)
            if baseline is None:
                assert shared is not None
                baseline = await self._run_baseline(found, source, shared)
                self._store_baseline(repo, base_sha, found, baseline)
            if own_env:
                ws.refuse_nested_git()
                task = Path(tmp) / "task"
                await asyncio.to_thread(copy_tree, ws.root, task)
                environment = await self._build(repo, task, f"{repo.key}:{ws.branch}", version)
            else:
                assert shared is not None
                environment = shared
        return Prepared(environment, found.command, found.why, baseline, guidance)

    async def _build(self, repo: RepoRef, source: Path, scope: str, version: str) -> Environment:
        agent = self.config.agent
        return await prepare_environment(
            source,
            repo.key,
            agent.setup_command,
            self.config.envs_dir,
            agent.sandbox,
            self.redactor,
            agent.setup_allow_hosts,
            scope,
            secrets={name: value.get_secret_value() for name, value in agent.setup_secrets.items()},
            version=version,
        )

    async def _run_baseline(self, found: TestCommand, source: Path, environment: Environment) -> Baseline:
        if found.command is None:
            return Baseline(
                command=None,
                summary=f"{found.why}; set agent.test_command (or test_command in the repository's .tamma/config.toml)",
            )
        result = await run_in_environment(found.command, source, environment, self.config.agent.sandbox, self.redactor)
        counts = parse_results(result.output)
        limit = self.config.agent.sandbox.timeout_s
        broken = broken_environment(counts, result.exit_code, result.output, result.timed_out, limit)
        if environment.failed:
            broken = "the repository's setup failed"
        missing = _missing_content(source)
        if broken and missing:
            broken += f"; {missing}"
        ran = f"did not finish within {limit:.0f}s" if result.timed_out else counts.describe()
        return Baseline(
            command=found.command,
            counts=counts,
            exit_code=result.exit_code,
            broken=broken,
            output_tail=result.output[-3000:],
            summary=f"base commit: {ran} (exit {result.exit_code})"
            + (f"; {missing}" if missing and result.exit_code != 0 and not broken else ""),
        )

    def _baseline_path(self, repo: RepoRef, base_sha: str, found: TestCommand) -> Path:
        agent = self.config.agent
        h = hashlib.sha256()
        for part in (repo.key, base_sha, found.command or "", agent.setup_command or "", agent.sandbox.backend):
            h.update(part.encode() + b"\0")
        return self.config.envs_dir.parent / "baselines" / f"{h.hexdigest()[:32]}.json"

    def _cached_baseline(self, repo: RepoRef, base_sha: str, found: TestCommand) -> Baseline | None:
        path = self._baseline_path(repo, base_sha, found)
        try:
            cached = Baseline.model_validate_json(path.read_bytes())
        except (OSError, ValueError):
            return None
        # a run killed by a signal (a time or memory limit) says nothing lasting about the
        # repository: run again (such runs are no longer stored; older versions stored them)
        return None if cached.exit_code < 0 else cached

    def _store_baseline(self, repo: RepoRef, base_sha: str, found: TestCommand, baseline: Baseline) -> None:
        if baseline.broken or baseline.exit_code < 0:
            return  # a broken environment is looked at again next time (someone may fix the setup)
        path = self._baseline_path(repo, base_sha, found)
        private_dir(path.parent)
        pending = path.with_name(f".{path.name}.{os.getpid()}")
        write_file(pending, baseline.model_dump_json().encode())
        os.replace(pending, path)

    @asynccontextmanager
    async def _default_branch(self, repo: RepoRef) -> AsyncIterator[Workspace]:
        """A read-only look at the repository's default branch (for its map)."""
        platform = self.platforms(repo)
        async with self._workspace(platform, await platform.default_branch()) as ws:
            yield ws

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
    finally:
        # The SDK's HTTP client closed with the step, not left to the garbage collector (which
        # warned "AsyncClient.aclose was never awaited" and kept sockets until it ran).
        closing = getattr(provider, "aclose", None)
        if closing is not None:
            with contextlib.suppress(Exception):
                await closing()


async def _branch_listing(ws: Workspace, base: str) -> dict[str, Any]:
    """The branch's changed paths for the blocked-path gate: listed up to what history can carry,
    with the true count so that the gate fails closed on what was not listed."""
    changes = await ws.branch_changes(base)
    return {"branch_files": changes.files[:MAX_LISTED_FILES], "branch_files_total": changes.total}


def _path_of(provider: LLMProvider) -> str:
    return str(provider.path) if isinstance(provider, RecordingProvider) else ""


def _missing_content(source: Path) -> str:
    """What the repository keeps outside its tree, which Tamma's checkouts do not have: why its
    tests may not run (or fail) here through no fault of the code."""
    notes = []
    if modules := submodule_paths(source):
        notes.append(
            f"the repository has git submodules ({', '.join(modules)}), which Tamma does not fetch — their "
            "folders are empty here"
        )
    if stored := lfs_patterns(source):
        notes.append(
            f"files matching {', '.join(stored)} are stored with Git LFS, and Tamma's checkouts hold their pointers, "
            "not their contents"
        )
    if not notes:
        return ""
    return (
        "; ".join(notes)
        + ": commit what the tests need as plain files, or set agent.test_command to tests that do not need it"
    )


def _summarise(summary: str, exit_code: int, timed_out: bool, output: str = "") -> str:
    if timed_out:
        stuck = hung_test(output)
        return (f"timed out (exit {exit_code})" + (f", stuck in {stuck}" if stuck else "") + f"; {summary}")[:500]
    return summary[:500]


# Paths of tests in the common layouts: a change that touches one brings its own evidence.
_TEST_PATH = re.compile(
    r"(^|/)(tests?|spec|specs|__tests__|testing)/|(^|/)test_[^/]*\.py$|_test\.(py|go|c|cc|cpp)$"
    r"|\.(test|spec)\.[cm]?[jt]sx?$|(^|/)tests?\.rs$"
)


@dataclass
class Prepared:
    environment: Environment
    command: str | None
    why: str
    baseline: Baseline
    guidance: str = ""  # the repository's AGENTS.md & co. on the base commit


class _TestRunner:
    """The repository's test command on one workspace, with what the base commit did. Called
    as the agent's run_tests tool it adds the gate's reading of the run to the output. After
    every sandboxed run a change to .git or a nested repository fails the step before
    anything is staged."""

    def __init__(self, acts: IssueActivities, repo: RepoRef, ws: Workspace, base: str) -> None:
        self.acts, self.repo, self.ws, self.base = acts, repo, ws, base
        self._prepared: Prepared | None = None

    async def prepared(self) -> Prepared:
        if self._prepared is None:
            self._prepared = await self.acts.prepare_tests(self.repo, self.ws, self.base)
        baseline = self._prepared.baseline
        if baseline.broken:
            raise EnvironmentBroken(baseline.explain(), retryable=False)
        return self._prepared

    async def run_once(self) -> CommandResult:
        prepared = await self.prepared()
        if prepared.command is None:
            return CommandResult(exit_code=0, output=f"[tamma] {prepared.baseline.summary}\n")
        return await self.run_command(prepared.command)

    async def run_command(self, command: str, timeout_s: float | None = None) -> CommandResult:
        """Any command line in the tests' sandbox and environment (the agent's `run` tool)."""
        prepared = await self.prepared()
        ws, policy = self.ws, self.acts.config.agent.sandbox
        if timeout_s is not None:
            policy = policy.model_copy(update={"timeout_s": min(timeout_s, policy.timeout_s)})
        before = ws.git_fingerprint()
        result = await run_in_environment(command, ws.root, prepared.environment, policy, self.acts.redactor)
        if ws.git_fingerprint() != before:
            raise SandboxError(
                "code run for the tests changed the workspace's .git (config, hooks or info): refusing to "
                "commit from it; this is an attack or a broken test suite",
                retryable=False,
            )
        ws.refuse_nested_git()
        return result

    async def __call__(self) -> CommandResult:
        result = await self.run_once()
        prepared = await self.prepared()
        if prepared.command is None:
            return result
        counts = parse_results(result.output)
        verdict = judge(counts, result.exit_code, prepared.baseline.counts, False, prepared.baseline.exit_code)
        note = f"\n[tamma] {counts.describe()}; {prepared.baseline.summary}"
        if verdict.regressions:
            note += f"; failing since the change: {', '.join(verdict.regressions[:10])}"
        if verdict.preexisting:
            note += f"; already failing on the base commit: {', '.join(verdict.preexisting[:10])}"
        return result.model_copy(update={"output": result.output + note + "\n"})
