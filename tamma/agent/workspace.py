"""A workspace: a fresh clone of the task's branch in the worker's work dir.

Each implement or test step is self-contained (clone → change → commit → push), so a retry on
any worker resumes from what was pushed, and a worker killed mid-step loses nothing that had
been pushed and leaves nothing half-pushed. Commits carry a `Tamma-Iteration` trailer so a
retry can tell that its iteration already landed and must not be done twice.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from pathlib import Path

from tamma.errors import InvalidInputError
from tamma.gitcmd import RECEIVE_PACK, UPLOAD_PACK, git

TRAILER = "Tamma-Iteration"


class Workspace:
    def __init__(self, root: Path, branch: str, env: dict[str, str] | None = None, url: str = "") -> None:
        self.root = root
        self.branch = branch
        self.env = env or {}
        # Fetches and pushes name the URL Tamma cloned, never `origin`: sandboxed code cannot
        # write .git/config, and even without a sandbox it must not redirect a push.
        self.url = url

    @classmethod
    async def clone(cls, url: str, branch: str, work_dir: Path, env: dict[str, str] | None = None) -> Workspace:
        """`env` carries the forge's credentials to git (never into .git/config or the sandbox)."""
        work_dir.mkdir(parents=True, exist_ok=True)
        root = Path(tempfile.mkdtemp(prefix="ws-", dir=work_dir))
        await git(
            "clone", "--quiet", UPLOAD_PACK, "--no-recurse-submodules", "--branch", branch, "--single-branch",
            url, str(root), env=env,
        )  # fmt: skip
        return cls(root, branch, env, url)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def resolve(self, relative: str) -> Path:
        """A path inside the workspace; refuse anything that escapes it or touches .git."""
        if not relative or relative.startswith("/"):
            raise InvalidInputError(f"path {relative!r} must be relative to the repository root")
        target = (self.root / relative).resolve()
        if not target.is_relative_to(self.root.resolve()):
            raise InvalidInputError(f"path {relative!r} leaves the repository")
        if ".git" in target.relative_to(self.root.resolve()).parts:
            raise InvalidInputError(f"path {relative!r} is inside .git, which the agent may not touch")
        return target

    def git_fingerprint(self) -> str:
        """A digest of what in .git could make git run code (config, hooks, info/): compared
        before and after sandboxed code ran, so a change there is caught even on a backend that
        cannot make .git read-only."""
        h = hashlib.sha256()
        git_dir = self.root / ".git"
        for path in [git_dir / "config", *sorted((git_dir / "hooks").glob("*")), *sorted((git_dir / "info").glob("*"))]:
            h.update(str(path.relative_to(git_dir)).encode() + b"\0")
            if path.is_file() and not path.is_symlink():
                h.update(path.read_bytes())
            elif path.is_symlink():
                h.update(str(path.readlink()).encode())
        return h.hexdigest()

    async def head(self) -> str:
        return await git("rev-parse", "HEAD", cwd=self.root)

    async def head_iteration(self) -> int | None:
        """The iteration recorded in HEAD's trailer, if Tamma made HEAD."""
        value = await git("log", "-1", f"--format=%(trailers:key={TRAILER},valueonly)", cwd=self.root)
        return int(value) if value.strip().isdigit() else None

    async def diff_from(self, base: str, limit_bytes: int) -> tuple[str, bool]:
        """(unified diff of this branch since it left `base`, whether it was cut to `limit_bytes`)."""
        await git("fetch", "--quiet", UPLOAD_PACK, self.url, f"refs/heads/{base}", cwd=self.root, env=self.env)
        diff = await git("diff", "--no-color", "--no-ext-diff", "--no-textconv", "FETCH_HEAD...HEAD", cwd=self.root)
        data = diff.encode()
        if len(data) <= limit_bytes:
            return diff, False
        return data[:limit_bytes].decode(errors="ignore"), True

    async def branch_files(self, base: str, limit: int = 3000) -> list[str]:
        """Every path this branch adds, changes, deletes or renames since it left `base`: what the
        blocked-path policy is checked against (the plan's own file list is only advice)."""
        await git("fetch", "--quiet", UPLOAD_PACK, self.url, f"refs/heads/{base}", cwd=self.root, env=self.env)
        out = await git(
            "-c", "core.quotePath=false", "diff", "--name-only", "--no-renames", "FETCH_HEAD...HEAD", cwd=self.root
        )
        return out.splitlines()[:limit]

    async def changed_files(self) -> list[str]:
        out = await git("status", "--porcelain", "--untracked-files=all", cwd=self.root)
        return [line[3:] for line in out.splitlines() if line]

    async def commit_and_push(self, message: str, iteration: int, name: str, email: str) -> str | None:
        """Commit every change with the iteration trailer and push; None when nothing changed."""
        if not await self.changed_files():
            return None
        await git("add", "--all", cwd=self.root)
        ident = ["-c", f"user.name={name}", "-c", f"user.email={email}"]
        await git(*ident, "commit", "--quiet", "-m", message, "--trailer", f"{TRAILER}: {iteration}", cwd=self.root)
        await git(
            "push", "--quiet", RECEIVE_PACK, self.url, f"HEAD:refs/heads/{self.branch}", cwd=self.root, env=self.env
        )
        return await self.head()


def sweep_workspaces(work_dir: Path, older_than_s: float) -> int:
    """Remove workspaces that no step can still be using (a killed worker leaves its clone):
    those not touched for longer than the longest step may run. Returns how many went."""
    if not work_dir.is_dir():
        return 0
    gone = 0
    for ws in work_dir.glob("ws-*"):
        try:
            if time.time() - ws.stat().st_mtime > older_than_s:
                shutil.rmtree(ws, ignore_errors=True)
                gone += 1
        except OSError:
            continue
    return gone
