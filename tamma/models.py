"""Domain types shared by workflows, activities, platforms, providers and launchers.

Workflows and activities exchange only these small typed models (never loose dicts), and
everything here is small enough for workflow history: diffs, logs and transcripts stay in
files and are referred to by path or summarised.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from tamma.status import TaskStatus as TaskStatus  # re-exported: where it was first declared

Level = Literal["low", "medium", "high"]
LEVEL_ORDER: dict[str, int] = {"low": 0, "medium": 1, "high": 2}
PlatformKind = Literal["local", "github", "gitlab"]


class RepoRef(BaseModel):
    """Where the work happens: a platform and the repository's locator on it."""

    platform: PlatformKind
    locator: str = Field(description="local: absolute path; github/gitlab: owner/name")

    @property
    def key(self) -> str:
        return f"{self.platform}:{self.locator}"


class Strict(BaseModel):
    """A model that refuses keys it does not declare: settings sections and the settings-shaped
    parts of a task's options, so a typo is an error, never a silently ignored value."""

    model_config = ConfigDict(extra="forbid")


def _unlimited(value: object) -> object:
    return None if isinstance(value, str) and value.strip().lower() in ("unlimited", "none", "null") else value


Limit = Annotated[int | None, BeforeValidator(_unlimited)]
FloatLimit = Annotated[float | None, BeforeValidator(_unlimited)]


class Budget(Strict):
    """Per-issue limits the workflow enforces. The defaults are safety limits; None (null in
    YAML/JSON, "unlimited" in TOML or an environment variable) removes one."""

    # No lower bounds: the workflow carries what is *left* in this model, which reaches zero.
    max_tokens: Limit = 3_000_000
    max_cost_usd: FloatLimit = 10.0
    max_agent_turns: Limit = 120
    max_wall_s: FloatLimit = 4 * 3600.0

    def ran_out(self, spent: Usage, elapsed_s: float) -> str:
        """The first of these limits that `spent` (in `elapsed_s`) has reached, as "the tokens
        budget ran out: 3000100 of 3000000"; "" while all hold. The one budget check: the
        workflow's between steps, the agent's between turns."""
        for name, limit, value in (
            ("tokens", self.max_tokens, spent.tokens),
            ("cost (USD)", self.max_cost_usd, spent.cost_usd),
            ("agent turns", self.max_agent_turns, spent.agent_turns),
            ("wall time (s)", self.max_wall_s, elapsed_s),
        ):
            if limit is not None and value >= limit:
                return f"the {name} budget ran out: {value:g} of {limit:g}"
        return ""

    def left_after(self, spent: Usage, elapsed_s: float) -> Budget:
        """What is left of this budget once `spent` and `elapsed_s` are taken off."""
        return Budget(
            max_tokens=None if self.max_tokens is None else self.max_tokens - spent.tokens,
            max_cost_usd=None if self.max_cost_usd is None else round(self.max_cost_usd - spent.cost_usd, 6),
            max_agent_turns=None if self.max_agent_turns is None else self.max_agent_turns - spent.agent_turns,
            max_wall_s=None if self.max_wall_s is None else self.max_wall_s - elapsed_s,
        )


class Usage(BaseModel):
    """Tokens and cost of model calls: per call, per step, per issue."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
    agent_turns: int = 0

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_read_tokens + self.cache_write_tokens

    def plus(self, other: Usage) -> Usage:
        return Usage(
            calls=self.calls + other.calls,
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            cost_usd=round(self.cost_usd + other.cost_usd, 6),
            agent_turns=self.agent_turns + other.agent_turns,
        )


class Issue(BaseModel):
    number: int
    title: str
    body: str = ""
    author: str = ""
    state: Literal["open", "closed"] = "open"
    labels: list[str] = Field(default_factory=list)
    url: str = ""
    assignees: list[str] = Field(default_factory=list)


class Analysis(BaseModel):
    summary: str
    complexity: Level
    risk: Level
    affected_areas: list[str] = Field(default_factory=list)


class PlanStep(BaseModel):
    title: str
    detail: str = ""


class Plan(BaseModel):
    summary: str
    steps: list[PlanStep]
    files: list[str] = Field(default_factory=list)
    estimate_hours: float = Field(ge=0)
    test_strategy: str = ""


class ReviewFinding(BaseModel):
    path: str = Field(default="", description="file the finding is about, relative to the repository root")
    line: int | None = Field(default=None, description="line in the new version, when it is about one")
    problem: str = Field(description="what is wrong, in one or two sentences")
    suggestion: str = Field(default="", description="what to change")


class SelfReview(BaseModel):
    """A model's review of Tamma's own change, before anyone else sees it."""

    approve: bool = Field(description="true when the change resolves the issue and is fit to open as a PR")
    summary: str = Field(description="the verdict in one or two sentences")
    findings: list[ReviewFinding] = Field(default_factory=list, description="problems that must be fixed first")


class ApprovalPolicy(Strict):
    """When a plan may go ahead without a person saying yes."""

    auto_approve: bool = True
    max_complexity: Level = "low"
    max_risk: Level = "low"
    max_estimate_hours: float = 2.0
    blocked_paths: list[str] = Field(
        default_factory=lambda: [".github/**", "**/*.pem", "**/*.key", "**/.env*", "deploy/**"]
    )


SandboxBackend = Literal["auto", "bwrap", "container", "none"]


class SandboxPolicy(Strict):
    """How commands the agent causes to run (tests, setup) are fenced. One declaration: the
    settings' ``agent.sandbox`` section is this model."""

    backend: SandboxBackend = Field(
        default="auto",
        description="auto: bwrap, else a container engine; none runs agent code unisolated (explicit opt-out only)",
    )
    timeout_s: float = Field(default=300.0, gt=0, description="wall-clock limit per command")
    cpu_s: int = Field(default=300, ge=1)
    memory_mb: int = Field(
        default=2048,
        ge=64,
        description="memory of the whole sandbox (its cgroup, or the container's limit); each process is "
        "also held to it as an address-space rlimit, the only bound where no cgroup can be had",
    )
    pids_max: int = Field(default=1024, ge=16, description="processes and threads in one sandbox (its cgroup)")
    disk_mb: int = Field(
        default=4096, ge=16, description="the workspace's size after a command; above it the step fails"
    )
    cgroup: Literal["auto", "require", "off"] = Field(
        default="auto",
        description="per-sandbox cgroup (memory_mb, pids_max): auto uses one where the host delegates it and "
        "warns where not; require refuses to run agent code without one",
    )
    cgroup_parent: str = Field(
        default="", description="a delegated cgroup v2 directory to make sandbox cgroups in (default: the worker's own)"
    )
    file_size_mb: int = Field(default=256, ge=1)
    nproc: int = Field(default=4096, ge=16, description="processes of the sandbox's user (RLIMIT_NPROC)")
    nofile: int = Field(default=1024, ge=16, description="open files per process (RLIMIT_NOFILE)")
    network: bool = Field(
        default=False, description="allow network access to the tests (setup always goes via the proxy)"
    )
    image: str = Field(default="python:3.11-slim", description="container backend: the image commands run in")
    engine: Literal["auto", "podman", "docker"] = Field(default="auto", description="container backend: which engine")
    hide_paths: list[str] = Field(
        default_factory=list, description="more host paths to keep out of the sandbox (under /etc, /usr...)"
    )
    toolchains: list[str] = Field(
        default_factory=lambda: ["auto"],
        description="toolchain folders shown read-only in the sandbox with their bin/ on PATH (a rustup "
        "toolchain, an nvm node, a Go SDK); 'auto' adds the ones found in the usual per-user places",
    )


class ApprovalDecision(BaseModel):
    approved: bool
    by: str
    reason: str = ""
    automatic: bool = False


class ApprovalRequest(BaseModel):
    """What `tamma approve` / the API send to the workflow's `approve` update."""

    by: str = "cli"
    reason: str = ""
    delivery: str = Field(default="", description="webhook delivery id, so a redelivery changes nothing")


class EventNote(BaseModel):
    """A forge event relayed to a running workflow (CI finished, review, issue closed...)."""

    kind: str
    delivery: str = ""
    detail: str = ""


class TestReport(BaseModel):
    __test__ = False  # not a pytest class

    passed: bool
    command: str
    exit_code: int
    summary: str
    output_tail: str = Field(default="", description="last lines only; full log stays on disk")
    duration_s: float = 0.0
    isolation: str = ""
    tests_ran: int | None = Field(
        default=None, description="tests the run executed; None when no runner summary was read"
    )
    untested: bool = Field(default=False, description="nothing could test the change: no merge without a person")
    regressions: list[str] = Field(default_factory=list, description="tests that pass on the base commit and fail now")
    preexisting: list[str] = Field(default_factory=list, description="tests that already failed on the base commit")
    fixed: list[str] = Field(default_factory=list, description="tests that failed on the base commit and pass now")
    baseline: str = Field(default="", description="what the same command did on the base commit")
    command_source: str = Field(default="", description="why this test command (config, guidance file, manifest)")


class AnalyseOutput(BaseModel):
    analysis: Analysis
    usage: Usage = Field(default_factory=Usage)
    transcript_path: str = ""


class PlanOutput(BaseModel):
    plan: Plan
    usage: Usage = Field(default_factory=Usage)
    transcript_path: str = ""


class ImplementResult(BaseModel):
    commit: str
    changed_files: list[str] = Field(default_factory=list)
    left_out: list[str] = Field(
        default_factory=list,
        description="new files the tests or builds made, which the agent did not write: not committed",
    )
    summary: str = ""
    turns: int = 0
    reused: bool = Field(default=False, description="true when an earlier attempt had pushed it")
    transcript_path: str = ""
    usage: Usage = Field(default_factory=Usage)
    branch_files: list[str] = Field(
        default_factory=list, description="every file the branch changes against the default branch (capped)"
    )
    branch_files_total: int = Field(
        default=0, description="how many files the branch changes; above len(branch_files) the gate fails closed"
    )


class PullRequest(BaseModel):
    number: int
    branch: str
    base: str
    title: str
    body: str = ""
    url: str = ""
    state: Literal["open", "merged", "closed"] = "open"
    head_sha: str = ""
    merge_sha: str = ""
    draft: bool = False


class CIFailure(BaseModel):
    """One failing check, as the coding agent reads it when it is asked to fix CI. Its text is
    written by the repository's CI (hostile input, like a review comment) and bounded in size."""

    name: str
    summary: str = Field(default="", description="the check's own title/summary or status description")
    log: str = Field(default="", description="the tail of the job's log, when the forge gives one")
    url: str = ""


class CIStatus(BaseModel):
    state: Literal["pending", "success", "failure"]
    detail: str = ""
    sha: str = Field(default="", description="the head commit this state is about")
    failures: list[CIFailure] = Field(default_factory=list, description="the failing checks, when state is failure")


class ReviewComment(BaseModel):
    """One piece of review feedback: a line comment, a reply in its thread, or a review's body."""

    id: int
    author: str
    body: str
    path: str = ""
    line: int | None = Field(default=None, description="line in the new version of `path`")
    thread: int | None = Field(default=None, description="id of the comment this one answers")
    verdict: str = Field(default="", description="a review's state, e.g. CHANGES_REQUESTED")
    discussion: str = Field(default="", description="GitLab: the discussion (thread) it belongs to")
    association: str = Field(
        default="",
        description="the author's standing in the repository, as the forge says: GitHub's author_association "
        "(OWNER, MEMBER, COLLABORATOR, CONTRIBUTOR, NONE...), GitLab's role (OWNER, MAINTAINER, DEVELOPER, "
        "REPORTER, GUEST, NONE); the local platform's reviewers are the machine's own users (OWNER)",
    )


class MergeResult(BaseModel):
    merged: bool
    sha: str = ""
    already_merged: bool = False


class StepName(StrEnum):
    FETCH = "fetch issue"
    ANALYSE = "analyse"
    PLAN = "plan"
    APPROVAL = "approval"
    BRANCH = "branch"
    IMPLEMENT = "implement"
    TEST = "run tests"
    OPEN_PR = "open PR"
    CI = "CI"
    SELF_REVIEW = "self-review"
    REVIEW = "review"
    MERGE = "merge"


class StepRecord(BaseModel):
    name: StepName
    status: Literal["running", "done", "failed", "skipped"] = "running"
    started_at: datetime
    ended_at: datetime | None = None
    detail: str = ""


class WorkflowOptions(Strict):
    """How a task's workflow behaves; declared once: the settings' ``[workflow]`` section is this
    model, and every task carries a copy in its input (workflow code never reads settings)."""

    approval_timeout_s: float = Field(default=24 * 3600, gt=0, description="then the task is escalated")
    max_fix_attempts: int = Field(default=2, ge=0, description="implement again after failing tests")
    max_review_rounds: int = Field(default=2, ge=0, description="rounds of answering reviewers' comments")
    max_ci_fix_attempts: int = Field(
        default=2, ge=0, description="times the agent is handed a failed CI's checks and logs to fix before it stops"
    )
    rate_limit_horizon_s: float = Field(
        default=1800.0,
        ge=0,
        description="how long a task waits out a model's rate limit (on durable timers, no worker held) before "
        "it parks for a person: `tamma retry N` resumes it",
    )
    self_review: bool = Field(default=False, description="a model reviews the diff before the PR is opened")
    max_self_review_rounds: int = Field(default=1, ge=0, description="fix rounds the self-review may ask for")
    auto_merge: bool = True
    merge_delay_s: float = Field(
        default=0.0,
        ge=0,
        description="a window before merging in which a reviewer can object: a trusted review comment "
        "arriving in it leaves the PR open for people instead; 0: merge as soon as CI and reviews allow",
    )
    merge_wait_s: float = Field(
        default=7 * 24 * 3600,
        ge=0,
        description="how long a merge the forge holds (a required review, a required check not reported yet) "
        "is waited for — on webhooks and a backing-off timer, no worker held — before the task fails; 0: at once",
    )
    ci_poll_s: float = Field(default=30.0, gt=0, description="fallback poll of CI when no webhook arrives")
    ci_timeout_s: float = Field(default=6 * 3600, gt=0)
    heartbeat_timeout_s: float = Field(default=10.0, gt=0, description="a dead worker's step moves after this")
    step_timeout_s: float = Field(default=1800.0, gt=0, description="longest implement or test step")
    retry_attempts: int = Field(default=3, ge=1, description="attempts per step, the first included")
    retry_initial_s: float = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _coherent(self) -> WorkflowOptions:
        if self.heartbeat_timeout_s >= self.step_timeout_s:
            raise ValueError(
                f"heartbeat_timeout_s ({self.heartbeat_timeout_s:g}) must be below step_timeout_s "
                f"({self.step_timeout_s:g}): a dead worker is noticed by its missing heartbeat"
            )
        return self


class TaskOptions(WorkflowOptions):
    """Per-task knobs carried in the workflow input: the workflow options plus the task's own."""

    yes: bool = Field(default=False, description="approve the plan without asking")
    policy: ApprovalPolicy = Field(default_factory=ApprovalPolicy)
    transcript: str | None = Field(default=None, description="replay this recording instead of calling a model")
    budget: Budget = Field(default_factory=Budget)
    notify_on: list[str] = Field(default_factory=list, description="statuses that send a notification (notify.on)")


MAX_ISSUE = 2**31 - 1  # forges number issues far below this; Temporal's Int attribute is 64-bit


class IssueTaskInput(BaseModel):
    repo: RepoRef
    issue_number: int = Field(ge=1, le=MAX_ISSUE)
    options: TaskOptions = Field(default_factory=TaskOptions)


class TaskState(BaseModel):
    """What the `state` query answers and `tamma status` shows."""

    workflow_id: str
    repo: RepoRef
    issue_number: int
    status: TaskStatus = TaskStatus.RUNNING
    step: StepName = StepName.FETCH
    steps: list[StepRecord] = Field(default_factory=list)
    issue_title: str = ""
    analysis: Analysis | None = None
    plan: Plan | None = None
    approval: ApprovalDecision | None = None
    branch: str = ""
    commit: str = ""
    tests: list[TestReport] = Field(default_factory=list)
    pull_request: PullRequest | None = None
    merge_sha: str = ""
    error: str = ""
    usage: Usage = Field(default_factory=Usage)
    usage_by_step: dict[str, Usage] = Field(default_factory=dict)
    self_review: SelfReview | None = Field(default=None, description="the last self-review's verdict")
    review_replies: int = Field(default=0, description="review threads told which commit answers them")
    ci_fix_rounds: int = Field(default=0, description="times a failed CI was handed back to the agent")
    parked_reason: str = Field(default="", description="why a parked task waits for a person, and how to resume it")
    transcripts: list[str] = Field(default_factory=list, description="paths of recorded exchanges")
    note: str = Field(default="", description="set when this is a partial view (no worker answered)")


class TaskSummary(BaseModel):
    """One row of `tamma list`, answered from Temporal visibility."""

    workflow_id: str
    repository: str
    issue_number: int
    status: str
    step: str
    started_at: datetime | None = None


# ---- activity inputs -------------------------------------------------------------------------


class IssueRef(BaseModel):
    repo: RepoRef
    number: int


class AnalyseInput(BaseModel):
    repo: RepoRef
    issue: Issue
    transcript: str | None = None
    session: int = Field(default=1, description="planning round: 2 after the issue was edited once")


class PlanInput(BaseModel):
    repo: RepoRef
    issue: Issue
    analysis: Analysis
    transcript: str | None = None
    session: int = 1


class BranchInput(BaseModel):
    repo: RepoRef
    issue_number: int
    branch: str


class ImplementInput(BaseModel):
    repo: RepoRef
    issue: Issue
    plan: Plan
    branch: str
    iteration: int = Field(description="1 for the first attempt, +1 per fix or review round")
    feedback: str = Field(default="", description="test failures or review comments to address")
    transcript: str | None = None
    budget_left: Budget = Field(default_factory=Budget, description="what this issue may still spend")


class ReplyInput(BaseModel):
    repo: RepoRef
    pr_number: int
    comments: list[ReviewComment] = Field(description="the feedback the commit answers")
    commit: str


class SelfReviewInput(BaseModel):
    repo: RepoRef
    issue: Issue
    plan: Plan
    branch: str
    iteration: int = Field(description="the implement iteration under review")
    transcript: str | None = None


class SelfReviewResult(BaseModel):
    review: SelfReview
    diff_bytes: int = 0
    usage: Usage = Field(default_factory=Usage)
    transcript_path: str = ""


class TestInput(BaseModel):
    __test__ = False  # not a pytest class

    repo: RepoRef
    branch: str
    commit: str


class OpenPRInput(BaseModel):
    repo: RepoRef
    issue: Issue
    plan: Plan
    branch: str
    tests: str = Field(default="", description="how the change was tested, for the PR body")
    draft: bool = Field(default=False, description="open it as a draft: nothing tested the change")


class PRRef(BaseModel):
    repo: RepoRef
    pr_number: int
    head_sha: str = Field(default="", description="merge only if the branch is still at this commit")


class CIWaitInput(BaseModel):
    """Wait for CI's verdict on a pull request inside one heartbeating activity (its polls are
    not workflow history)."""

    repo: RepoRef
    pr_number: int
    stale: str = Field(default="", description="a failure on this commit is the forge not having seen the push yet")
    timeout_s: float = Field(gt=0, description="give up (answer pending) after this long")
    poll_s: float = Field(gt=0)


class CommentInput(BaseModel):
    repo: RepoRef
    issue_number: int
    body: str
    pull_request: bool = Field(default=False, description="issue_number is a pull/merge request's number")


class PollInput(BaseModel):
    """One poll of a repository (a Temporal Schedule's action): which open issues are Tamma's,
    by the same rules as the webhooks, and the options a task started by the poll gets."""

    repo: RepoRef
    bot_login: str
    trigger_label: str
    options: TaskOptions
    limit: int = Field(default=200, ge=1, le=1000)


class PollResult(BaseModel):
    candidates: list[int] = Field(default_factory=list, description="open issues assigned to or labelled for Tamma")
    started: list[int] = Field(default_factory=list, description="the ones that had no task and got one now")


class TaskEvent(BaseModel):
    """A task's state change, as notifications carry it (no issue text, no code, no secrets)."""

    task: str
    repository: str
    issue: int
    status: str
    reason: str = ""
    issue_title: str = ""
    pull_request: str = ""
    at: datetime
    sequence: int = Field(description="the task's notification count: with `task`, an idempotency key")
