"""GitHub through PyGithub: issues, one progress comment, branches via the refs API, pull
requests, check runs + combined status, reviews, merge.

PyGithub is synchronous; calls run in a thread. Its own retries and request pacing are off:
Temporal retries the activity, with the delay GitHub asks for on rate limits.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import github
import requests
from github import Auth, Github, GithubException
from github.CommitStatus import CommitStatus
from github.GithubObject import NotSet
from github.PaginatedList import PaginatedList

from tamma.config import GitHubSettings
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
    MAX_FAILURES,
    OWN_MARK,
    PROGRESS_MARK,
    clip,
    comment_mark,
    fetch_tail,
    find_or_create,
    git_auth_env,
    reply_mark,
    reply_text,
    roll_up,
    threads_of,
)
from tamma.version import user_agent

T = TypeVar("T")
log = logging.getLogger("tamma.github")

# REST does not say whether a review thread is resolved; GraphQL does. One query per 100 threads.
# `fullDatabaseId` (a BigInt, sent as a string) is the REST id; `databaseId` is deprecated.
_THREADS = """
query($owner: String!, $name: String!, $number: Int!, $after: String) {
  repository(owner: $owner, name: $name) {
    pullRequest(number: $number) {
      reviewThreads(first: 100, after: $after) {
        pageInfo { hasNextPage endCursor }
        nodes { isResolved comments(first: 1) { nodes { fullDatabaseId } } }
      }
    }
  }
}
"""
# A base branch whose ruleset requires the merge queue: the REST merge is refused and the pull
# request joins the queue by GraphQL; GitHub merges it once the queue's checks pass.
_QUEUE_ENTRY = """
query($owner: String!, $name: String!, $number: Int!) {
  repository(owner: $owner, name: $name) {
    pullRequest(number: $number) { id merged mergeQueueEntry { position state } }
  }
}
"""
_ENQUEUE = """
mutation($input: EnqueuePullRequestInput!) {
  enqueuePullRequest(input: $input) { mergeQueueEntry { position state } }
}
"""
_MERGE_QUEUE = re.compile(r"merge queue", re.IGNORECASE)
_NEEDS = "a token with repo scope (classic) or contents, issues, pull requests and statuses: write (fine-grained)"

#: what GitHub's branch protection and rulesets answer (405) while a merge waits on people or
#: checks: a required approving or code-owner review, a required status check not reported yet
_HELD = re.compile(
    r"approving review|review is required|review required|code owner review|"
    r"required status checks? .*(expected|pending|in progress|has not)|waiting (on|for) (status|check)",
    re.IGNORECASE,
)


def map_github_error(exc: Exception, what: str) -> TammaError:
    if isinstance(exc, requests.RequestException):
        return PlatformError(f"GitHub did not answer {what} ({type(exc).__name__})")
    if not isinstance(exc, GithubException):
        raise exc
    status, headers = exc.status, {k.lower(): v for k, v in (exc.headers or {}).items()}
    message = (exc.data or {}).get("message", "") if isinstance(exc.data, dict) else str(exc.data)
    if status == 401:
        return PlatformError(
            f"GitHub refused the credentials (401) for {what}; set github.token "
            "(GITHUB_TOKEN) or the GitHub App settings",
            retryable=False,
        )
    if status in (403, 429) and (
        headers.get("x-ratelimit-remaining") == "0" or "retry-after" in headers or "rate limit" in message.lower()
    ):
        wait = float(headers["retry-after"]) if "retry-after" in headers else None
        if wait is None and "x-ratelimit-reset" in headers:
            wait = max(1.0, float(headers["x-ratelimit-reset"]) - time.time())
        return PlatformError(f"GitHub rate limit ({status}) on {what}: {message}", retry_after_s=wait or 60.0)
    if status == 403:
        return PlatformError(f"GitHub denied {what} (403: {message}); Tamma needs {_NEEDS}", retryable=False)
    if status == 404:
        return NotFoundError(
            f"GitHub has no {what} (404), or the token cannot see it; check the repository "
            f"name and that the token has {_NEEDS}"
        )
    if status == 405 and _HELD.search(message):
        return MergeWaiting(f"GitHub's branch protection holds {what}: {message}")
    if status in (405, 409):
        return MergeBlockedError(f"GitHub refused {what} ({status}): {message}")
    if status == 422:
        return InvalidInputError(f"GitHub rejected {what} (422): {message}")
    return PlatformError(f"GitHub failed {what} ({status}): {message}")


class GitHubPlatform:
    def __init__(self, repo: RepoRef, settings: GitHubSettings, bot_login: str = "") -> None:
        if repo.platform != "github":
            raise InvalidInputError(f"GitHubPlatform cannot serve {repo.key}")
        self.repo = repo
        self.settings = settings
        self.bot_login = bot_login
        self._identity: str | None = None  # who the credentials are, once asked
        self.owner = repo.locator.split("/")[0]
        self.gh = Github(
            auth=self._auth(settings),
            base_url=settings.base_url,
            timeout=int(settings.timeout_s),
            retry=None,
            per_page=100,
            seconds_between_requests=None,
            seconds_between_writes=None,
            lazy=True,
            user_agent=user_agent(),
        )
        self._repo = self.gh.get_repo(repo.locator)

    def _identities(self) -> set[str]:
        """The logins Tamma's own comments come from, lower-case: who the credentials are (a
        GitHub App posts as `<slug>[bot]`, read from GET /app; a token as its user, GET /user) —
        asked once — and `webhooks.bot_login` as configured."""
        if self._identity is None:
            self._identity = self._credential_login().lower()
        return {login for login in (self._identity, self.bot_login.lower()) if login}

    def _credential_login(self) -> str:
        s = self.settings
        try:
            if s.token is None and s.app_id is not None and s.app_private_key is not None:
                app = github.GithubIntegration(
                    auth=Auth.AppAuth(s.app_id, self._app_key(s)), base_url=s.base_url, timeout=int(s.timeout_s)
                ).get_app()
                return f"{app.slug}[bot]"
            return str(self.gh.get_user().login)
        except GithubException as exc:
            if exc.status in (401, 429) or exc.status >= 500:
                raise  # bad credentials, rate limits and outages fail or retry the step as usual
            log.warning(
                "cannot tell who the GitHub credentials are (%s); own comments are known by webhooks.bot_login "
                "(%s) and by their marker",
                exc.status,
                self.bot_login or "unset",
            )
            return ""

    def _own(self, login: str, body: str | None) -> bool:
        """A comment Tamma wrote: by one of its identities, or carrying one of its markers."""
        return login.lower() in self._identities() or OWN_MARK in (body or "")

    @staticmethod
    def _app_key(s: GitHubSettings) -> str:
        assert s.app_private_key is not None
        key = s.app_private_key.get_secret_value()
        return key if "-----BEGIN" in key else Path(key).expanduser().read_text(encoding="utf-8")

    @staticmethod
    def _auth(s: GitHubSettings) -> Auth.Auth:
        if s.token is not None:
            return Auth.Token(s.token.get_secret_value())
        if s.app_id is not None and s.app_private_key is not None and s.installation_id is not None:
            # Installation tokens last an hour; PyGithub refreshes them before they expire.
            return Auth.AppAuth(s.app_id, GitHubPlatform._app_key(s)).get_installation_auth(s.installation_id)
        raise ConfigError(
            "GitHub needs github.token (or GITHUB_TOKEN), or github.app_id + app_private_key + installation_id"
        )

    async def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(fn)
        except (GithubException, requests.RequestException) as exc:
            raise map_github_error(exc, what) from None
        except AssertionError as exc:
            # PyGithub asserts that every link it follows (pagination, an object's `url`) stays on
            # the configured API host; an answer pointing elsewhere is a broken or hostile peer.
            raise PlatformError(
                f"GitHub's answer for {what} links to another host ({str(exc)[:100]}); not followed. "
                "Check github.base_url (GitHub Enterprise: https://HOST/api/v3)",
                retryable=False,
            ) from None

    # ---- issues ------------------------------------------------------------------------------

    async def get_issue(self, number: int) -> Issue:
        def get() -> Issue:
            i = self._repo.get_issue(number)
            if i.pull_request is not None:
                raise NotFoundError(f"#{number} in {self.repo.locator} is a pull request, not an issue")
            return _issue(i)

        return await self._call(f"issue #{number} of {self.repo.locator}", get)

    async def open_issues(self, limit: int = 200) -> list[Issue]:
        """Open issues, newest first (pull requests, which GitHub lists as issues, left out)."""

        def listing() -> list[Issue]:
            found: list[Issue] = []
            for i in self._repo.get_issues(state="open"):
                if i.pull_request is None:
                    found.append(_issue(i))
                if len(found) >= limit:
                    break
            return found

        return await self._call(f"open issues of {self.repo.locator}", listing)

    async def comment_issue(self, number: int, body: str) -> None:
        marked = f"{body}\n\n{comment_mark(body)}"

        def post() -> None:
            issue = self._repo.get_issue(number)
            if any(comment_mark(body) in (c.body or "") for c in issue.get_comments()):
                return  # an earlier attempt posted it
            issue.create_comment(marked)

        await self._call(f"a comment on #{number}", post)

    async def comment_pull_request(self, number: int, body: str) -> None:
        await self.comment_issue(number, body)  # on GitHub a pull request is an issue too

    async def upsert_progress(self, number: int, body: str) -> None:
        text = f"{PROGRESS_MARK}\n{body}"

        def upsert() -> None:
            issue = self._repo.get_issue(number)
            mine = next((c for c in issue.get_comments() if PROGRESS_MARK in (c.body or "")), None)
            if mine is None:
                issue.create_comment(text)
            elif mine.body != text:
                mine.edit(text)

        await self._call(f"the progress comment on #{number}", upsert)

    # ---- git ---------------------------------------------------------------------------------

    def clone_url(self) -> str:
        if self.settings.git_url:
            return self.settings.git_url.format(repo=self.repo.locator)
        api = urlsplit(self.settings.base_url)
        host = "github.com" if api.netloc == "api.github.com" else api.netloc
        return f"{api.scheme}://{host}/{self.repo.locator}.git"

    def git_env(self) -> dict[str, str]:
        token = self.settings.token.get_secret_value() if self.settings.token else ""
        if not token:
            token = getattr(self.gh.requester.auth, "token", "") or ""
        return git_auth_env(self.clone_url(), "x-access-token", token) if token else {}

    async def default_branch(self) -> str:
        return await self._call(f"repository {self.repo.locator}", lambda: self._repo.default_branch)

    async def ensure_branch(self, branch: str, base: str) -> str:
        def find() -> str | None:
            try:
                return str(self._repo.get_git_ref(f"heads/{branch}").object.sha)
            except GithubException as exc:
                if exc.status == 404:
                    return None
                raise

        def create() -> str:
            sha = str(self._repo.get_branch(base).commit.sha)
            self._repo.create_git_ref(f"refs/heads/{branch}", sha)
            return sha

        def ensure() -> str:
            return find_or_create(find, create, lambda e: isinstance(e, GithubException) and e.status == 422)

        return await self._call(f"branch {branch}", ensure)

    # ---- pull requests -----------------------------------------------------------------------

    def _pr(self, p: Any) -> PullRequest:
        state = "merged" if p.merged else ("closed" if p.state == "closed" else "open")
        return PullRequest(
            number=p.number,
            branch=p.head.ref,
            base=p.base.ref,
            title=p.title,
            body=p.body or "",
            url=p.html_url,
            state=state,
            head_sha=p.head.sha,
            merge_sha=p.merge_commit_sha or "" if p.merged else "",
            draft=bool(p.draft),
        )

    def _find(self, branch: str) -> PullRequest | None:
        for p in self._repo.get_pulls(state="open", head=f"{self.owner}:{branch}"):
            return self._pr(p)
        return None

    async def find_pull_request(self, branch: str) -> PullRequest | None:
        return await self._call(f"pull requests for {branch}", lambda: self._find(branch))

    async def get_pull_request(self, number: int) -> PullRequest:
        return await self._call(f"pull request #{number}", lambda: self._pr(self._repo.get_pull(number)))

    async def create_pull_request(
        self, branch: str, base: str, title: str, body: str, draft: bool = False
    ) -> PullRequest:
        def create() -> PullRequest:
            # 422 "A pull request already exists": a racing attempt opened it; reuse that one.
            return find_or_create(
                lambda: self._find(branch),
                lambda: self._pr(
                    self._repo.create_pull(
                        base=base, head=branch, title=title, body=body, draft=self.settings.draft or draft
                    )
                ),
                lambda e: isinstance(e, GithubException) and e.status == 422,
            )

        return await self._call(f"a pull request for {branch}", create)

    async def report_tests(self, sha: str, report: TestReport) -> None:
        def post() -> None:
            self._repo.get_commit(sha).create_status(
                state="success" if report.passed else "failure", context="tamma/tests", description=report.summary[:140]
            )

        await self._call(f"a commit status on {sha[:10]}", post)

    async def ci_status(self, pr: PullRequest) -> CIStatus:
        def status() -> CIStatus:
            head = self._repo.get_pull(pr.number).head.sha
            commit = self._repo.get_commit(head)
            states: list[tuple[str, str]] = []
            failing: list[CIFailure] = []
            for run in commit.get_check_runs():  # paginated: every check run, not the first page
                if run.status != "completed":
                    states.append((run.name, "pending"))
                elif run.conclusion in ("success", "neutral", "skipped"):
                    states.append((run.name, "success"))
                else:
                    states.append((run.name, "failure"))
                    failing.append(self._check_failure(run))
            combined = commit.get_combined_status()
            latest: dict[str, Any] = {st.context: st for st in combined.statuses}
            if combined.total_count > len(latest):
                # The combined status holds one page of contexts; the rest come from the full
                # list, newest first, so the first status seen of a context is its current one.
                listing = PaginatedList(CommitStatus, self.gh.requester, f"{commit.url}/statuses", None)
                for st in listing:  # GET /repos/{owner}/{repo}/commits/{ref}/statuses, as documented
                    latest.setdefault(st.context, st)
            for context, st in latest.items():
                state = {"success": "success", "pending": "pending"}.get(st.state, "failure")
                states.append((context, state))
                if state == "failure":
                    failing.append(
                        CIFailure(name=context, summary=clip(st.description or "", 2000), url=st.target_url or "")
                    )
            if combined.state in ("failure", "error") and not any(s == "failure" for _, s in states):
                states.append(("combined commit status", "failure"))  # GitHub's own verdict wins
            rolled = roll_up(states)
            return rolled.model_copy(update={"sha": head, "failures": failing[:MAX_FAILURES] if failing else []})

        return await self._call(f"CI of #{pr.number}", status)

    def _check_failure(self, run: Any) -> CIFailure:
        """A failed check run's own output, and for a GitHub Actions job the tail of its log.
        The log is best effort: without `actions: read` the check's output still goes through."""
        output = run.output
        parts = (output.title, output.summary, output.text) if output is not None else ()
        summary = "\n".join(str(p) for p in parts if p)
        log_tail = ""
        if run.app is not None and run.app.slug == "github-actions":
            try:
                # An Actions check run's id is its job's id; /logs redirects to the plain-text log.
                url = self._repo.get_workflow_job(run.id).logs_url()
                log_tail = fetch_tail(url, timeout_s=self.settings.timeout_s)
            except (GithubException, requests.RequestException, KeyError) as exc:
                log.warning("no log for check %r: %s", run.name, getattr(exc, "status", exc))
        return CIFailure(name=run.name, summary=clip(summary, 2000), log=log_tail, url=run.html_url or "")

    async def review_comments(self, pr: PullRequest) -> list[ReviewComment]:
        def collect() -> list[ReviewComment]:
            pull = self._repo.get_pull(pr.number)
            resolved = self._resolved_threads(pr.number)
            out = [
                ReviewComment(
                    id=c.id,
                    author=c.user.login,
                    body=c.body,
                    path=c.path or "",
                    line=c.line or c.original_line or None,
                    thread=c.in_reply_to_id or None,
                    association=c.author_association or "NONE",
                )
                for c in pull.get_review_comments()
                if c.user and not self._own(c.user.login, c.body) and (c.in_reply_to_id or c.id) not in resolved
            ]
            # A review's own body (the summary people write when they request changes or comment);
            # negative ids keep them apart from line comments. Approvals ask for nothing.
            out += [
                ReviewComment(
                    id=-r.id,
                    author=r.user.login,
                    body=r.body,
                    verdict=r.state,
                    association=r.author_association or "NONE",
                )
                for r in pull.get_reviews()
                if r.state in ("CHANGES_REQUESTED", "COMMENTED")
                and r.body
                and r.user
                and not self._own(r.user.login, r.body)
            ]
            return out

        return await self._call(f"reviews of #{pr.number}", collect)

    async def reply_to_reviews(self, pr: PullRequest, comments: list[ReviewComment], commit: str) -> int:
        def reply() -> int:
            pull = self._repo.get_pull(pr.number)
            threads = threads_of(comments)
            if not threads:
                return 0
            me = self._identities()
            done = {
                c.in_reply_to_id
                for c in pull.get_review_comments()
                if c.user and c.user.login.lower() in me and reply_mark(c.in_reply_to_id, commit) in (c.body or "")
            }
            posted = 0
            for root in threads:
                if root not in done:  # a retried attempt skips what the lost answer had posted
                    pull.create_review_comment_reply(root, reply_text(commit, root))
                    posted += 1
            return posted

        return await self._call(f"replies on #{pr.number}", reply)

    def _resolved_threads(self, number: int) -> set[int]:
        """Ids of the first comment of every resolved review thread (GraphQL); empty, with a
        warning, when GraphQL is not available to this token or server."""
        owner, name = self.repo.locator.split("/", 1)
        roots: set[int] = set()
        after: str | None = None
        try:
            while True:
                _, data = self.gh.requester.graphql_query(
                    _THREADS, {"owner": owner, "name": name, "number": number, "after": after}
                )
                threads = data["data"]["repository"]["pullRequest"]["reviewThreads"]
                for t in threads["nodes"]:
                    first = t["comments"]["nodes"]
                    if t["isResolved"] and first and first[0].get("fullDatabaseId"):
                        roots.add(int(first[0]["fullDatabaseId"]))
                if not threads["pageInfo"]["hasNextPage"]:
                    return roots
                after = threads["pageInfo"]["endCursor"]
        except (GithubException, KeyError, TypeError) as exc:
            if isinstance(exc, GithubException) and (exc.status in (401, 403, 429) or exc.status >= 500):
                raise  # credentials, rate limits, outages: the step fails or retries as for REST
            if isinstance(exc, GithubException) and (limited := _graphql_rate_limit(exc)) is not None:
                raise limited from None
            if isinstance(exc, GithubException) and _graphql_error_types(exc) & {"INTERNAL", "SERVICE_UNAVAILABLE"}:
                raise PlatformError(f"GitHub GraphQL failed on #{number}: {exc.data}") from None
            log.warning("cannot tell resolved review threads of #%s apart (GraphQL: %s); reading them all", number, exc)
            return set()

    def _enqueue(self, number: int, head: str) -> str:
        """Put the pull request in its base's merge queue (once: a retry finds it there), pinned
        to the head CI passed on; where it stands in the queue."""
        owner, name = self.repo.locator.split("/", 1)
        _, data = self.gh.requester.graphql_query(_QUEUE_ENTRY, {"owner": owner, "name": name, "number": number})
        pr = data["data"]["repository"]["pullRequest"]
        if pr.get("merged"):
            return "merged"
        entry = pr.get("mergeQueueEntry")
        if entry is None:
            _, done = self.gh.requester.graphql_query(
                _ENQUEUE, {"input": {"pullRequestId": pr["id"], "expectedHeadOid": head}}
            )
            entry = done["data"]["enqueuePullRequest"]["mergeQueueEntry"]
        return _enqueued_position(entry)

    async def merge_pull_request(self, number: int, sha: str = "") -> MergeResult:
        def merge() -> MergeResult:
            pull = self._repo.get_pull(number)
            if pull.merged:
                return MergeResult(merged=True, sha=pull.merge_commit_sha or "", already_merged=True)
            if pull.mergeable is False:
                raise MergeBlockedError(f"#{number} has conflicts with {pull.base.ref}; resolve them and retry")
            if sha and pull.head.sha != sha:
                raise _moved(number, sha, pull.head.sha)
            if pull.draft:
                # github.draft opens the PR as a draft; GitHub refuses to merge a draft (405), and
                # only GraphQL can mark it ready. CI is green and policy allows the merge: now it is.
                pull.mark_ready_for_review()
            try:
                # GitHub refuses (409) if the head moved between our look and the merge.
                status = pull.merge(merge_method=self.settings.merge_method, sha=sha or NotSet)
            except GithubException as exc:
                if exc.status == 409:
                    raise _moved(number, sha, "a newer commit") from None
                message = exc.data.get("message", "") if isinstance(exc.data, dict) else str(exc.data)
                if exc.status == 405 and _MERGE_QUEUE.search(message):
                    where = self._enqueue(number, sha or pull.head.sha)
                    raise MergeWaiting(
                        f"#{number} is in {pull.base.ref}'s merge queue ({where}); GitHub merges it when the "
                        "queue's checks pass"
                    ) from None
                raise
            if not status.merged:
                raise MergeBlockedError(f"GitHub did not merge #{number}: {status.message}")
            return MergeResult(merged=True, sha=status.sha)

        return await self._call(f"the merge of #{number}", merge)


__all__ = ["GitHubPlatform", "github", "map_github_error"]


def _enqueued_position(entry: dict[str, object] | None) -> str:
    return f"position {entry.get('position')}, {str(entry.get('state', '')).lower()}" if entry else "queued"


def _graphql_error_types(exc: GithubException) -> set[str]:
    errors = exc.data.get("errors") if isinstance(exc.data, dict) else None
    return {str(e.get("type", "")) for e in errors or [] if isinstance(e, dict)}


def _graphql_rate_limit(exc: GithubException) -> PlatformError | None:
    """GitHub answers a GraphQL rate limit with HTTP 200 and an error of type RATE_LIMITED (PyGithub
    turns any `errors` into a 400): a retry after the reset, never "no GraphQL here"."""
    if not _graphql_error_types(exc) & {"RATE_LIMITED", "RATE_LIMIT"}:
        return None
    headers = {k.lower(): v for k, v in (exc.headers or {}).items()}
    wait = 60.0
    if "retry-after" in headers:
        wait = float(headers["retry-after"])
    elif "x-ratelimit-reset" in headers:
        wait = max(1.0, float(headers["x-ratelimit-reset"]) - time.time())
    return PlatformError("GitHub GraphQL rate limit reached reading review threads", retry_after_s=wait)


def _moved(number: int, tested: str, now: str) -> MergeBlockedError:
    return MergeBlockedError(
        f"#{number} moved after CI passed on {tested[:10]} (head is now {now[:10]}): an untested commit is "
        "not merged; retry the task to test and merge the new head"
    )


def _issue(i: Any) -> Issue:
    return Issue(
        number=i.number,
        title=i.title,
        body=i.body or "",
        author=i.user.login if i.user else "",
        state="closed" if i.state == "closed" else "open",
        labels=[lbl.name for lbl in i.labels],
        url=i.html_url,
        assignees=[a.login for a in i.assignees],
    )
