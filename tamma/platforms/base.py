"""The GitPlatform protocol: what the issue workflow needs from a forge.

Every mutating method is idempotent: it first looks for what an earlier attempt made (the
branch, the pull request, the merge) and returns that instead of making a second one.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from tamma.models import CIStatus, Issue, MergeResult, PullRequest, RepoRef, ReviewComment, TestReport


@runtime_checkable
class GitPlatform(Protocol):
    repo: RepoRef

    async def get_issue(self, number: int) -> Issue: ...

    async def open_issues(self, limit: int = 200) -> list[Issue]:
        """Open issues, newest first, at most `limit` (for a person to pick one)."""
        ...

    async def comment_issue(self, number: int, body: str) -> None: ...

    async def comment_pull_request(self, number: int, body: str) -> None:
        """A comment on the pull/merge request itself (posted once, however often retried)."""
        ...

    async def default_branch(self) -> str: ...

    async def upsert_progress(self, number: int, body: str) -> None:
        """Create or edit Tamma's one progress comment on the issue."""
        ...

    def clone_url(self) -> str:
        """A URL or path `git clone` accepts; it must carry no secret that could reach logs."""
        ...

    def git_env(self) -> dict[str, str]:
        """Environment for git commands against clone_url (credentials travel here, not in URLs)."""
        ...

    async def ensure_branch(self, branch: str, base: str) -> str:
        """Create `branch` from `base` unless it exists; return its head sha."""
        ...

    async def get_pull_request(self, number: int) -> PullRequest: ...

    async def find_pull_request(self, branch: str) -> PullRequest | None: ...

    async def create_pull_request(
        self, branch: str, base: str, title: str, body: str, draft: bool = False
    ) -> PullRequest:
        """Open a PR for `branch` (a draft with `draft`), or return the one already open for it."""
        ...

    async def report_tests(self, sha: str, report: TestReport) -> None:
        """Publish Tamma's own test run as a commit status for `sha`."""
        ...

    async def ci_status(self, pr: PullRequest) -> CIStatus: ...

    async def review_comments(self, pr: PullRequest) -> list[ReviewComment]: ...

    async def reply_to_reviews(self, pr: PullRequest, comments: list[ReviewComment], commit: str) -> int:
        """Answer each thread among `comments` once with "addressed in `commit`"; skip threads an
        earlier attempt already answered for that commit. Returns how many replies it posted."""
        ...

    async def merge_pull_request(self, number: int, sha: str = "") -> MergeResult:
        """Merge, or report the merge an earlier attempt already made. With `sha`, only if the
        branch is still at that commit (the one CI passed on); else MergeBlockedError."""
        ...
