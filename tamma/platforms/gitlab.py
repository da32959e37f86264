"""GitLab (gitlab.com or self-hosted) through python-gitlab: issues and notes, one progress
note, branches, merge requests, commit statuses and pipelines, approvals, merge.

python-gitlab is synchronous; calls run in a thread. Its own retries (429 sleeps, transient
errors) are off: Temporal retries the activity, waiting as long as GitLab asks.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import gitlab
import requests
from gitlab.exceptions import GitlabError, GitlabGetError

from tamma.config import GitLabSettings
from tamma.errors import (
    ConfigError,
    InvalidInputError,
    MergeBlockedError,
    MergeWaiting,
    NotFoundError,
    PlatformError,
    TammaError,
)
from tamma.models import CIFailure, CIStatus, Issue, MergeResult, PullRequest, RepoRef, ReviewComment, TestReport
from tamma.platforms.forge import (
    LOG_READ_BYTES,
    LOG_TAIL_CHARS,
    MAX_FAILURES,
    OWN_MARK,
    PROGRESS_MARK,
    clip,
    comment_mark,
    find_or_create,
    git_auth_env,
    reply_mark,
    reply_text,
    roll_up,
    threads_of,
)
from tamma.version import user_agent

T = TypeVar("T")
log = logging.getLogger("tamma.gitlab")
_NEEDS = "a personal, project or group access token with the api scope (Developer role or higher)"
_CI = {"success": "success", "skipped": "success", "manual": "success", "failed": "failure", "canceled": "failure"}


#: GitLab's access levels, highest first, by the names Tamma's trust policy uses.
_ROLES = ((50, "OWNER"), (40, "MAINTAINER"), (30, "DEVELOPER"), (20, "REPORTER"), (10, "GUEST"))


class _Gitlab(gitlab.Gitlab):
    """python-gitlab with its retries off: a 429 or 5xx surfaces at once for Temporal to retry."""

    def http_request(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.update(obey_rate_limit=False, retry_transient_errors=False, max_retries=0)
        return super().http_request(*args, **kwargs)


class GitLabPlatform:
    def __init__(self, repo: RepoRef, settings: GitLabSettings, bot_login: str = "") -> None:
        if repo.platform != "gitlab":
            raise InvalidInputError(f"GitLabPlatform cannot serve {repo.key}")
        if settings.token is None:
            raise ConfigError("GitLab needs gitlab.token (or GITLAB_TOKEN): " + _NEEDS)
        self.repo = repo
        self.settings = settings
        self.bot_login = bot_login
        self._identity: str | None = None  # the token's username, once asked
        self.gl = _Gitlab(
            settings.base_url,
            private_token=settings.token.get_secret_value(),
            timeout=settings.timeout_s,
            per_page=100,
            keep_base_url=True,
            user_agent=user_agent(),
        )
        # python-gitlab keeps no response headers on errors; remember them to honour Retry-After.
        self._last = threading.local()
        self.gl.session.hooks["response"].append(self._remember)
        self._project = self.gl.projects.get(repo.locator, lazy=True)

    def _identities(self) -> set[str]:
        """The usernames Tamma's own notes come from, lower-case: the token's user (GET /user,
        asked once; a project or group access token is a bot user of its own) and
        `webhooks.bot_login` as configured."""
        if self._identity is None:
            try:
                user = self.gl.http_get("/user")
                self._identity = str(user.get("username", "")).lower() if isinstance(user, dict) else ""
            except GitlabError as exc:
                if exc.response_code in (401, 429) or (exc.response_code or 0) >= 500:
                    raise
                log.warning("cannot tell who the GitLab token is (%s); own notes are known by marker", exc)
                self._identity = ""
        return {login for login in (self._identity, self.bot_login.lower()) if login}

    def _remember(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self._last.headers = response.headers

    async def _call(self, what: str, fn: Callable[[], T]) -> T:
        def run() -> T:
            self._last.headers = {}
            try:
                return fn()
            except GitlabError as exc:
                raise self._map(exc, what, dict(getattr(self._last, "headers", {}) or {})) from None
            except requests.RequestException as exc:
                raise PlatformError(f"GitLab did not answer {what} ({type(exc).__name__})") from None

        return await asyncio.to_thread(run)

    @staticmethod
    def _map(exc: GitlabError, what: str, headers: dict[str, str]) -> TammaError:
        status, message = exc.response_code, str(exc.error_message)[:300]
        h = {k.lower(): v for k, v in headers.items()}
        if status == 401:
            return PlatformError(
                f"GitLab refused the token (401) for {what}; set gitlab.token (GITLAB_TOKEN)", retryable=False
            )
        if status == 429:
            wait = (
                float(h["retry-after"])
                if "retry-after" in h
                else (max(1.0, float(h["ratelimit-reset"]) - time.time()) if "ratelimit-reset" in h else 60.0)
            )
            return PlatformError(f"GitLab rate limit (429) on {what}", retry_after_s=wait)
        if status == 403:
            return PlatformError(f"GitLab denied {what} (403: {message}); Tamma needs {_NEEDS}", retryable=False)
        if status == 404:
            return NotFoundError(f"GitLab has no {what} (404), or the token cannot see it; check the project path")
        if status in (405, 406, 409):
            return MergeBlockedError(f"GitLab refused {what} ({status}): {message}")
        if status in (400, 422):
            return InvalidInputError(f"GitLab rejected {what} ({status}): {message}")
        return PlatformError(f"GitLab failed {what} ({status}): {message}")

    # ---- issues ------------------------------------------------------------------------------

    async def get_issue(self, number: int) -> Issue:
        return await self._call(
            f"issue #{number} of {self.repo.locator}", lambda: _issue(self._project.issues.get(number))
        )

    async def open_issues(self, limit: int = 200) -> list[Issue]:
        """Open issues, newest first."""

        def listing() -> list[Issue]:
            pages = self._project.issues.list(state="opened", order_by="created_at", iterator=True, per_page=100)
            found: list[Issue] = []
            for i in pages:
                found.append(_issue(i))
                if len(found) >= limit:
                    break
            return found

        return await self._call(f"open issues of {self.repo.locator}", listing)

    async def comment_issue(self, number: int, body: str) -> None:
        issue = self._project.issues.get(number, lazy=True)
        await self._call(f"a note on #{number}", lambda: _note_once(issue.notes, body))

    async def comment_pull_request(self, number: int, body: str) -> None:
        mr = self._project.mergerequests.get(number, lazy=True)
        await self._call(f"a note on !{number}", lambda: _note_once(mr.notes, body))

    async def upsert_progress(self, number: int, body: str) -> None:
        text = f"{PROGRESS_MARK}\n{body}"

        def upsert() -> None:
            issue = self._project.issues.get(number, lazy=True)
            mine = next((n for n in issue.notes.list(iterator=True) if PROGRESS_MARK in (n.body or "")), None)
            if mine is None:
                issue.notes.create({"body": text})
            elif mine.body != text:
                mine.body = text
                mine.save()

        await self._call(f"the progress note on #{number}", upsert)

    # ---- git ---------------------------------------------------------------------------------

    def clone_url(self) -> str:
        if self.settings.git_url:
            return self.settings.git_url.format(repo=self.repo.locator)
        base = urlsplit(self.settings.base_url)
        return f"{base.scheme}://{base.netloc}{base.path.rstrip('/')}/{self.repo.locator}.git"

    def git_env(self) -> dict[str, str]:
        assert self.settings.token is not None
        return git_auth_env(self.clone_url(), "oauth2", self.settings.token.get_secret_value())

    async def default_branch(self) -> str:
        return await self._call(
            f"project {self.repo.locator}", lambda: str(self.gl.projects.get(self.repo.locator).default_branch)
        )

    async def ensure_branch(self, branch: str, base: str) -> str:
        def find() -> str | None:
            try:
                return str(self._project.branches.get(branch).commit["id"])
            except GitlabError as exc:
                if exc.response_code == 404:
                    return None
                raise

        def ensure() -> str:
            # 400 "Branch already exists": a racing attempt made it.
            return find_or_create(
                find,
                lambda: str(self._project.branches.create({"branch": branch, "ref": base}).commit["id"]),
                lambda e: isinstance(e, GitlabError) and e.response_code == 400,
            )

        return await self._call(f"branch {branch}", ensure)

    # ---- merge requests ----------------------------------------------------------------------

    @staticmethod
    def _mr(m: Any) -> PullRequest:
        state = {"merged": "merged", "closed": "closed"}.get(m.state, "open")
        merge_sha = getattr(m, "merge_commit_sha", None) or getattr(m, "squash_commit_sha", None) or ""
        return PullRequest(
            number=m.iid,
            branch=m.source_branch,
            base=m.target_branch,
            title=m.title,
            body=m.description or "",
            url=m.web_url,
            state=state,
            draft=bool(getattr(m, "draft", False)) or str(m.title).startswith(("Draft:", "[Draft]", "(Draft)")),
            head_sha=m.sha or "",
            merge_sha=merge_sha if state == "merged" else "",
        )

    def _find(self, branch: str) -> PullRequest | None:
        for m in self._project.mergerequests.list(source_branch=branch, state="opened", iterator=True):
            return self._mr(m)
        return None

    async def find_pull_request(self, branch: str) -> PullRequest | None:
        return await self._call(f"merge requests for {branch}", lambda: self._find(branch))

    async def get_pull_request(self, number: int) -> PullRequest:
        return await self._call(f"merge request !{number}", lambda: self._mr(self._project.mergerequests.get(number)))

    async def create_pull_request(
        self, branch: str, base: str, title: str, body: str, draft: bool = False
    ) -> PullRequest:
        def open_mr() -> PullRequest:
            fields = {
                "source_branch": branch,
                "target_branch": base,
                "title": f"Draft: {title}" if draft else title,  # GitLab's draft: the title prefix
                "description": body,
                "remove_source_branch": True,
            }
            return self._mr(self._project.mergerequests.create(fields))

        def create() -> PullRequest:
            # 409 "Another open merge request already exists": a racing attempt opened it; reuse it.
            return find_or_create(
                lambda: self._find(branch), open_mr, lambda e: isinstance(e, GitlabError) and e.response_code == 409
            )

        return await self._call(f"a merge request for {branch}", create)

    async def report_tests(self, sha: str, report: TestReport) -> None:
        def post() -> None:
            self._project.commits.get(sha, lazy=True).statuses.create(
                {
                    "state": "success" if report.passed else "failed",
                    "name": "tamma/tests",
                    "description": report.summary[:140],
                }
            )

        await self._call(f"a commit status on {sha[:10]}", post)

    async def ci_status(self, pr: PullRequest) -> CIStatus:
        def status() -> CIStatus:
            head = self._project.mergerequests.get(pr.number).sha
            states: list[tuple[str, str]] = []
            failing: list[CIFailure] = []
            for s in self._project.commits.get(head, lazy=True).statuses.list(iterator=True, all=True):
                state = _CI.get(s.status, "pending")
                if state == "failure" and s.attributes.get("allow_failure"):
                    state = "success"  # a job allowed to fail does not fail the pipeline
                states.append((s.name, state))
                if state == "failure":
                    failing.append(self._job_failure(s))
            rolled = roll_up(states)
            return rolled.model_copy(update={"sha": head, "failures": failing[:MAX_FAILURES]})

        return await self._call(f"CI of !{pr.number}", status)

    def _job_failure(self, s: Any) -> CIFailure:
        """A failed status, with the tail of its job's trace when it is a GitLab CI job (best
        effort: a status posted by an outside CI has no trace here)."""
        target = s.attributes.get("target_url") or ""
        log_tail = ""
        if "/-/jobs/" in target:
            try:
                job = self._project.jobs.get(s.id, lazy=True)
                kept = b""
                read = 0
                for chunk in job.trace(iterator=True, chunk_size=64 * 1024):
                    read += len(chunk)
                    kept = (kept + chunk)[-LOG_TAIL_CHARS * 4 :]
                    if read >= LOG_READ_BYTES:
                        break
                log_tail = clip(kept.decode("utf-8", "replace"), LOG_TAIL_CHARS)
            except (GitlabError, requests.RequestException) as exc:
                log.warning("no trace for job %r: %s", s.name, exc)
        summary = s.attributes.get("description") or ""
        return CIFailure(name=s.name, summary=clip(summary, 2000), log=log_tail, url=target)

    async def review_comments(self, pr: PullRequest) -> list[ReviewComment]:
        def collect() -> list[ReviewComment]:
            mr = self._project.mergerequests.get(pr.number, lazy=True)
            me = self._identities()
            roles: dict[int, str] = {}
            out: list[ReviewComment] = []
            # Discussions rather than flat notes: they carry the threads, and a thread someone
            # resolved is settled and asks for nothing more.
            for discussion in mr.discussions.list(iterator=True):
                notes: list[dict[str, Any]] = discussion.attributes.get("notes") or []
                if any(n.get("resolvable") and n.get("resolved") for n in notes):
                    continue
                root = notes[0]["id"] if notes and not discussion.attributes.get("individual_note") else None
                for n in notes:
                    if n.get("system") or n["author"]["username"].lower() in me or OWN_MARK in (n.get("body") or ""):
                        continue  # GitLab's own notes, and Tamma's (by its user or by its marker)
                    position = n.get("position") or {}
                    out.append(
                        ReviewComment(
                            discussion=str(discussion.get_id()),
                            id=n["id"],
                            author=n["author"]["username"],
                            body=n["body"],
                            path=position.get("new_path") or "",
                            line=position.get("new_line"),
                            thread=root if root != n["id"] else None,
                            association=self._role(n["author"].get("id"), roles),
                        )
                    )
            return out

        return await self._call(f"discussions on !{pr.number}", collect)

    def _role(self, user_id: object, cache: dict[int, str]) -> str:
        """The user's role in the project (inherited memberships included), as a name; NONE for
        a user who is not a member. Notes carry no role, so it is asked once per user."""
        if not isinstance(user_id, int):
            return "NONE"
        if user_id not in cache:
            try:
                level = int(self._project.members_all.get(user_id).access_level)
            except GitlabGetError as exc:
                if exc.response_code != 404:
                    raise
                level = 0  # not a member
            cache[user_id] = next((name for floor, name in _ROLES if level >= floor), "NONE")
        return cache[user_id]

    async def reply_to_reviews(self, pr: PullRequest, comments: list[ReviewComment], commit: str) -> int:
        def reply() -> int:
            mr = self._project.mergerequests.get(pr.number, lazy=True)
            posted = 0
            for root, c in threads_of(comments).items():
                discussion = mr.discussions.get(c.discussion)
                notes: list[dict[str, Any]] = discussion.attributes.get("notes") or []
                if any(reply_mark(root, commit) in (n.get("body") or "") for n in notes):
                    continue  # an earlier attempt answered this thread for this commit
                discussion.notes.create({"body": reply_text(commit, root)})
                posted += 1
            return posted

        return await self._call(f"replies on !{pr.number}", reply)

    async def merge_pull_request(self, number: int, sha: str = "") -> MergeResult:
        def merge() -> MergeResult:
            mr = self._project.mergerequests.get(number)
            if mr.state == "merged":
                return MergeResult(merged=True, sha=self._mr(mr).merge_sha, already_merged=True)
            approvals = mr.approvals.get()
            if getattr(approvals, "approvals_left", 0):
                raise MergeWaiting(
                    f"!{number} needs {approvals.approvals_left} more approval(s) before GitLab merges it"
                )
            if sha and mr.sha != sha:
                raise MergeBlockedError(
                    f"!{number} moved after CI passed on {sha[:10]} (head is now {str(mr.sha)[:10]}): an untested "
                    "commit is not merged; retry the task to test and merge the new head"
                )
            if self._mr(mr).draft:
                # Opened as a draft (nothing tested it); a person approved the merge: ready it,
                # as GitLab will not merge a draft.
                mr.title = str(mr.title).removeprefix("Draft:").removeprefix("[Draft]").removeprefix("(Draft)").strip()
                mr.save()
            # GitLab refuses (409) if the source branch moved since `sha`.
            extra: dict[str, Any] = {"sha": sha} if sha else {}
            mr.merge(squash=self.settings.squash, should_remove_source_branch=True, **extra)
            done = self._project.mergerequests.get(number)
            if done.state != "merged":
                raise MergeBlockedError(f"GitLab did not merge !{number} (state {done.state})")
            return MergeResult(merged=True, sha=self._mr(done).merge_sha)

        return await self._call(f"the merge of !{number}", merge)


def _note_once(notes: Any, body: str) -> None:
    """Post `body` as a note unless an earlier attempt did (its marker is there)."""
    if any(comment_mark(body) in (n.body or "") for n in notes.list(iterator=True)):
        return
    notes.create({"body": f"{body}\n\n{comment_mark(body)}"})


def _issue(i: Any) -> Issue:
    return Issue(
        number=i.iid,
        title=i.title,
        body=i.description or "",
        author=(i.author or {}).get("username", ""),
        state="closed" if i.state == "closed" else "open",
        labels=list(i.labels or []),
        url=i.web_url,
        assignees=[a.get("username", "") for a in (i.attributes.get("assignees") or []) if isinstance(a, dict)],
    )
