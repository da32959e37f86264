"""The local platform: any git repository on disk (bare or not) plays the forge.

Issues, pull-request records and commit statuses live in Tamma's data dir, one folder per
repository; branches are real branches in that repository; merge is a real `git merge` pushed
into the default branch. This is what `tamma start` uses with nothing configured.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import subprocess
import tempfile
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock

from tamma.errors import GitError, InvalidInputError, MergeBlockedError, NotFoundError, PlatformError
from tamma.gitcmd import UPLOAD_PACK, git, git_ok, receive_pack, safe_git_env_sync
from tamma.models import CIFailure, CIStatus, Issue, MergeResult, PullRequest, RepoRef, ReviewComment, TestReport
from tamma.platforms.forge import reply_text, threads_of

# Pushing into a non-bare repository's checked-out branch is refused by default; updateInstead
# updates its working tree too, and still refuses (safely) when that tree has local changes.
_UPDATE_INSTEAD = "-c receive.denyCurrentBranch=updateInstead"


def resolve_local_repo(path: Path | str) -> Path:
    """The top of the git repository at `path` (a work tree's root or a bare repo's dir)."""
    p = Path(path).expanduser().resolve()
    if not p.exists():
        raise InvalidInputError(f"{p} does not exist; pass a git repository path with --repo")

    def rev_parse(*args: str) -> str:
        out = subprocess.run(
            ["git", "-C", str(p), "rev-parse", *args],
            capture_output=True,
            text=True,
            check=False,
            env=safe_git_env_sync(p),
        )
        if out.returncode != 0:
            raise InvalidInputError(f"{p} is not a git repository; run `git init` there or pass --repo PATH")
        return out.stdout.strip()

    if rev_parse("--is-bare-repository") == "true":
        return Path(rev_parse("--absolute-git-dir"))
    return Path(rev_parse("--show-toplevel"))


def remote_url(repo_path: Path, remote: str = "origin") -> str:
    out = subprocess.run(
        ["git", "-C", str(repo_path), "remote", "get-url", remote],
        capture_output=True,
        text=True,
        check=False,
        env=safe_git_env_sync(repo_path),
    )
    return out.stdout.strip() if out.returncode == 0 else ""


def local_repo_ref(path: Path | str) -> RepoRef:
    return RepoRef(platform="local", locator=str(resolve_local_repo(path)))


class LocalStore:
    """Tamma's records for one local repository: JSON files, written atomically under a lock."""

    def __init__(self, data_dir: Path, repo_path: Path) -> None:
        digest = hashlib.sha256(str(repo_path).encode()).hexdigest()[:12]
        self.root = data_dir / "local" / f"{repo_path.name}-{digest}"
        for sub in ("issues", "pulls", "statuses"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        meta = self.root / "repository.txt"
        if not meta.exists():
            meta.write_text(str(repo_path) + "\n", encoding="utf-8")

    @contextmanager
    def locked(self) -> Iterator[None]:
        """An exclusive lock on this repository's records, across processes. Never hold it across
        an await (see create_pull_request)."""
        with FileLock(self.root / ".lock"):  # flock on POSIX, LockFileEx on Windows
            yield

    def read(self, kind: str, key: str | int) -> dict[str, Any] | None:
        f = self.root / kind / f"{key}.json"
        if not f.exists():
            return None
        data: dict[str, Any] = json.loads(f.read_text(encoding="utf-8"))
        return data

    def write(self, kind: str, key: str | int, data: dict[str, Any]) -> None:
        target = self.root / kind / f"{key}.json"
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, default=str)
        os.replace(tmp, target)

    def all(self, kind: str) -> list[dict[str, Any]]:
        files = sorted((self.root / kind).glob("*.json"), key=lambda f: int(f.stem))
        return [json.loads(f.read_text(encoding="utf-8")) for f in files]

    def next_number(self, kind: str) -> int:
        numbers = [int(f.stem) for f in (self.root / kind).glob("*.json")]
        return max(numbers, default=0) + 1


#: a pull request body's "Fixes #N" (and closes/resolves), as GitHub and GitLab read it
_CLOSES = re.compile(r"(?i)\b(?:fix(?:e[sd])?|close[sd]?|resolve[sd]?)\s+#(\d+)\b")


class LocalPlatform:
    """GitPlatform over a repository on disk."""

    def __init__(self, repo: RepoRef, data_dir: Path) -> None:
        if repo.platform != "local":
            raise InvalidInputError(f"LocalPlatform cannot serve {repo.key}")
        self.repo = repo
        self.path = Path(repo.locator)
        if not self.path.exists():
            raise NotFoundError(f"repository {self.path} no longer exists; check --repo")
        self.store = LocalStore(data_dir, self.path)

    # ---- issues (local only: create / list) --------------------------------------------------

    def create_issue(self, title: str, body: str = "", author: str = "", labels: list[str] | None = None) -> Issue:
        if not title.strip():
            raise InvalidInputError("an issue needs a title; pass one as the first argument")
        with self.store.locked():
            number = self.store.next_number("issues")
            issue = Issue(
                number=number,
                title=title.strip(),
                body=body,
                author=author,
                url=f"local:{self.path}#{number}",
                labels=[x.strip() for x in labels or [] if x.strip()],
            )
            record = issue.model_dump() | {"comments": [], "created_at": _now()}
            self.store.write("issues", number, record)
        return issue

    def list_issues(self) -> list[Issue]:
        return [Issue.model_validate(_issue_fields(d)) for d in self.store.all("issues")]

    def issue_comments(self, number: int) -> list[dict[str, Any]]:
        record = self._issue_record(number)
        comments: list[dict[str, Any]] = record["comments"]
        return comments

    def _issue_record(self, number: int) -> dict[str, Any]:
        record = self.store.read("issues", number)
        if record is None:
            raise NotFoundError(f"issue #{number} does not exist in {self.path}; list issues with `tamma issue list`")
        return record

    async def open_issues(self, limit: int = 200) -> list[Issue]:
        return [i for i in reversed(self.list_issues()) if i.state == "open"][:limit]

    async def get_issue(self, number: int) -> Issue:
        return Issue.model_validate(_issue_fields(self._issue_record(number)))

    async def comment_issue(self, number: int, body: str) -> None:
        with self.store.locked():
            record = self._issue_record(number)
            record["comments"].append({"author": "tamma", "body": body, "at": _now()})
            self.store.write("issues", number, record)

    async def comment_pull_request(self, number: int, body: str) -> None:
        with self.store.locked():
            record = self._pr_record(number)
            record.setdefault("comments", []).append({"author": "tamma", "body": body, "at": _now()})
            self.store.write("pulls", number, record)

    def pull_request_comments(self, number: int) -> list[dict[str, Any]]:
        comments: list[dict[str, Any]] = self._pr_record(number).get("comments", [])
        return comments

    async def upsert_progress(self, number: int, body: str) -> None:
        with self.store.locked():
            record = self._issue_record(number)
            record["progress"] = body
            self.store.write("issues", number, record)

    def progress(self, number: int) -> str:
        return str(self._issue_record(number).get("progress", ""))

    # ---- branches ----------------------------------------------------------------------------

    def clone_url(self) -> str:
        return str(self.path)

    def git_env(self) -> dict[str, str]:
        return {}

    async def default_branch(self) -> str:
        head = await git("symbolic-ref", "--short", "HEAD", cwd=self.path, check=False)
        if head and await git_ok("rev-parse", "--verify", f"refs/heads/{head}", cwd=self.path):
            return head
        raise InvalidInputError(f"{self.path} has no commits on its default branch; commit something first")

    async def ensure_branch(self, branch: str, base: str) -> str:
        if not await git_ok("rev-parse", "--verify", f"refs/heads/{branch}", cwd=self.path):
            await git("branch", branch, f"refs/heads/{base}", cwd=self.path)
        return await git("rev-parse", f"refs/heads/{branch}", cwd=self.path)

    # ---- pull requests -----------------------------------------------------------------------

    async def find_pull_request(self, branch: str) -> PullRequest | None:
        return self._open_pull_request(branch)

    def _open_pull_request(self, branch: str) -> PullRequest | None:
        for record in reversed(self.store.all("pulls")):
            if record["branch"] == branch and record["state"] != "closed":
                return PullRequest.model_validate(_pr_fields(record))
        return None

    async def create_pull_request(
        self, branch: str, base: str, title: str, body: str, draft: bool = False
    ) -> PullRequest:
        # Everything that awaits happens before the lock: a file lock held across an await would
        # block this event loop for good when another coroutine here asks for the same lock.
        head = await git("rev-parse", f"refs/heads/{branch}", cwd=self.path)
        with self.store.locked():
            existing = self._open_pull_request(branch)
            if existing is not None:
                return existing
            number = self.store.next_number("pulls")
            pr = PullRequest(
                number=number,
                branch=branch,
                base=base,
                title=title,
                body=body,
                url=f"local:{self.path}!{number}",
                head_sha=head,
                draft=draft,
            )
            self.store.write("pulls", number, pr.model_dump() | {"reviews": [], "created_at": _now()})
        return pr

    async def get_pull_request(self, number: int) -> PullRequest:
        return PullRequest.model_validate(_pr_fields(self._pr_record(number)))

    def list_pull_requests(self) -> list[PullRequest]:
        return [PullRequest.model_validate(_pr_fields(d)) for d in self.store.all("pulls")]

    def add_review_comment(self, number: int, author: str, body: str, path: str = "") -> ReviewComment:
        with self.store.locked():
            record = self._pr_record(number)
            comment = ReviewComment(id=len(record["reviews"]) + 1, author=author, body=body, path=path)
            record["reviews"].append(comment.model_dump())
            self.store.write("pulls", number, record)
        return comment

    def _pr_record(self, number: int) -> dict[str, Any]:
        record = self.store.read("pulls", number)
        if record is None:
            raise NotFoundError(f"pull request !{number} does not exist in {self.path}")
        return record

    async def report_tests(self, sha: str, report: TestReport) -> None:
        state = "success" if report.passed else "failure"
        self.store.write("statuses", sha, {"state": state, "detail": report.summary, "at": _now()})

    async def ci_status(self, pr: PullRequest) -> CIStatus:
        head = await git("rev-parse", f"refs/heads/{pr.branch}", cwd=self.path)
        status = self.store.read("statuses", head)
        if status is None:
            return CIStatus(state="pending", detail=f"no test run recorded for {head[:10]}", sha=head)
        failures = [CIFailure(name="tamma/tests", summary=status["detail"])] if status["state"] == "failure" else []
        return CIStatus(state=status["state"], detail=status["detail"], sha=head, failures=failures)

    async def review_comments(self, pr: PullRequest) -> list[ReviewComment]:
        # Reviews of a local repository are written by the people at this machine (CLI, API).
        return [
            ReviewComment.model_validate({"association": "OWNER", **c}) for c in self._pr_record(pr.number)["reviews"]
        ]

    async def reply_to_reviews(self, pr: PullRequest, comments: list[ReviewComment], commit: str) -> int:
        """Replies are kept in the PR record (`replies`), apart from the feedback itself."""
        with self.store.locked():
            record = self._pr_record(pr.number)
            replies: list[dict[str, Any]] = record.setdefault("replies", [])
            done = {(r["thread"], r["commit"]) for r in replies}
            fresh = [t for t in threads_of(comments) if (t, commit) not in done]
            replies += [{"thread": t, "commit": commit, "body": reply_text(commit, t)} for t in fresh]
            self.store.write("pulls", pr.number, record)
        return len(fresh)

    async def merge_pull_request(self, number: int, sha: str = "") -> MergeResult:
        record = self._pr_record(number)
        if record["state"] == "merged":
            return MergeResult(merged=True, sha=record["merge_sha"], already_merged=True)
        pr = PullRequest.model_validate(_pr_fields(record))
        head = await git("rev-parse", f"refs/heads/{pr.branch}", cwd=self.path)
        if sha and head != sha:
            raise MergeBlockedError(
                f"!{number} moved after CI passed on {sha[:10]} (head is now {head[:10]}): an untested commit is "
                "not merged; retry the task to test and merge the new head"
            )
        if await git_ok("merge-base", "--is-ancestor", head, f"refs/heads/{pr.base}", cwd=self.path):
            # An earlier attempt pushed the merge but died before recording it.
            sha = await git("rev-parse", f"refs/heads/{pr.base}", cwd=self.path)
        else:
            # One merge at a time per repository in this process (an asyncio lock: nothing blocks
            # the event loop); merges from other processes race, and the loser retries.
            async with _merge_lock(self.path):
                sha = await self._merge_in_place(pr, head) or await self._merge_and_push(pr)
        with self.store.locked():
            record = self._pr_record(number)
            record.update(state="merged", merge_sha=sha, head_sha=head, merged_at=_now())
            self.store.write("pulls", number, record)
            # "Fixes #N" closes the issue, as a forge does: the picker stops offering finished work
            for fixed in sorted({int(n) for n in _CLOSES.findall(pr.body)}):
                issue = self.store.read("issues", fixed)
                if issue is not None and issue.get("state", "open") == "open":
                    issue.update(state="closed", closed_by=f"!{number}", closed_at=_now())
                    self.store.write("issues", fixed, issue)
        return MergeResult(merged=True, sha=sha)

    async def _merge_in_place(self, pr: PullRequest, head: str) -> str | None:
        """The merge without a clone: `git merge-tree --write-tree` computes it in the repository's
        object store, `commit-tree` records it, and the base moves by compare-and-swap
        (`update-ref <new> <old>`), so a merge by another process in between fails cleanly and the
        retry merges onto the new base. Where the base is checked out, its files follow (`read-tree
        -u -m`, as `receive.denyCurrentBranch=updateInstead` did), only when it has no uncommitted
        changes. None when this git cannot (merge-tree --write-tree needs git 2.38): then clone."""
        base_ref = f"refs/heads/{pr.base}"
        old = await git("rev-parse", "--verify", base_ref, cwd=self.path)
        out = await git(
            "merge-tree", "--write-tree", "--name-only", "--no-messages", old, head, cwd=self.path, check=False
        )
        lines = out.splitlines()
        if not lines or not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", lines[0]):
            return None  # no tree at all: an older git
        if len(lines) > 1:
            files = ", ".join(lines[1:6]) + (" ..." if len(lines) > 6 else "")
            raise MergeBlockedError(
                f"!{pr.number} does not merge cleanly into {pr.base} of {self.path} (conflicts in {files}); "
                f"resolve the conflict on {pr.branch} and retry"
            )
        ident = {f"GIT_{who}_{what}": value for who in ("AUTHOR", "COMMITTER")
                 for what, value in (("NAME", "Tamma"), ("EMAIL", "tamma@localhost"))}  # fmt: skip
        merge = await git(
            "commit-tree", lines[0], "-p", old, "-p", head, "-m", f"Merge !{pr.number}: {pr.title}",
            cwd=self.path, env=ident,
        )  # fmt: skip
        tree = await self._work_tree_of(base_ref)
        if tree is not None:
            if await git("status", "--porcelain", "--untracked-files=no", cwd=tree):
                raise MergeBlockedError(
                    f"cannot update {pr.base} in {self.path}: its working tree has uncommitted changes; "
                    "commit or stash them and retry the merge"
                )
            try:
                await git("read-tree", "-u", "-m", old, merge, cwd=tree)
            except GitError as exc:  # an untracked file where the merge puts one
                raise MergeBlockedError(
                    f"cannot update {pr.base} in {self.path}: {exc.message}; move the file away and retry the merge"
                ) from None
        try:
            await git("update-ref", "-m", f"tamma: merge !{pr.number}", base_ref, merge, old, cwd=self.path)
        except GitError:
            if tree is not None:
                await git("read-tree", "-u", "-m", merge, old, cwd=tree)  # the files as they were
            raise PlatformError(f"{pr.base} of {self.path} moved during the merge of !{pr.number}") from None
        return merge

    async def _work_tree_of(self, ref: str) -> Path | None:
        """The working tree that has `ref` checked out, if any (none in a bare repository)."""
        listing = await git("worktree", "list", "--porcelain", cwd=self.path)
        for block in listing.split("\n\n"):
            fields = dict(line.partition(" ")[::2] for line in block.splitlines())
            if fields.get("branch") == ref and "bare" not in fields:
                return Path(fields["worktree"])
        return None

    async def _merge_and_push(self, pr: PullRequest) -> str:
        with tempfile.TemporaryDirectory(prefix="tamma-merge-") as tmp:
            await git("clone", "--quiet", UPLOAD_PACK, "--branch", pr.base, str(self.path), tmp)
            await git(
                "fetch",
                "--quiet",
                UPLOAD_PACK,
                "origin",
                f"refs/heads/{pr.branch}:refs/remotes/origin/{pr.branch}",
                cwd=tmp,
            )
            ident = ["-c", "user.name=Tamma", "-c", "user.email=tamma@localhost"]
            try:
                await git(
                    *ident, "merge", "--no-ff", "-m", f"Merge !{pr.number}: {pr.title}", f"origin/{pr.branch}", cwd=tmp
                )
            except GitError as exc:
                raise MergeBlockedError(
                    f"!{pr.number} does not merge cleanly into {pr.base} of {self.path}: "
                    f"{exc.message}; resolve the conflict on {pr.branch} and retry"
                ) from None
            try:
                await git(
                    "push",
                    "--quiet",
                    receive_pack(str(self.path), _UPDATE_INSTEAD),
                    "origin",
                    f"HEAD:refs/heads/{pr.base}",
                    cwd=tmp,
                )
            except GitError as exc:
                if "fetch first" in exc.message or "non-fast-forward" in exc.message:
                    # Another merge (another task, another worker) moved the base between our
                    # clone and our push: a retry merges onto the new base.
                    raise PlatformError(f"{pr.base} of {self.path} moved during the merge of !{pr.number}") from None
                raise MergeBlockedError(
                    f"cannot update {pr.base} in {self.path}: {exc.message}. If its working tree has "
                    "uncommitted changes, commit or stash them and retry the merge"
                ) from None
            return await git("rev-parse", "HEAD", cwd=tmp)


_MERGE_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Path, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def _merge_lock(path: Path) -> asyncio.Lock:
    """The merge lock of `path` in the running event loop (an asyncio lock belongs to one loop)."""
    locks = _MERGE_LOCKS.setdefault(asyncio.get_running_loop(), {})
    return locks.setdefault(path.resolve(), asyncio.Lock())


def _issue_fields(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k in Issue.model_fields}


def _pr_fields(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k in PullRequest.model_fields}


def _now() -> str:
    return datetime.now(UTC).isoformat()
