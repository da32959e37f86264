"""A workspace: a fresh clone of the task's branch in the worker's work dir.

Each implement or test step is self-contained (clone → change → commit → push), so a retry on
any worker resumes from what was pushed, and a worker killed mid-step loses nothing that had
been pushed and leaves nothing half-pushed. Commits carry a `Tamma-Iteration` trailer so a
retry can tell that its iteration already landed and must not be done twice.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tarfile
import tempfile
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from tamma.agent.safefs import nested_git
from tamma.errors import GitError, InvalidInputError, SandboxError
from tamma.gitcmd import UPLOAD_PACK, git, receive_pack

TRAILER = "Tamma-Iteration"
#: How many changed paths an ImplementResult carries into workflow history (payloads are capped
#: at ~2 MB). A branch that changes more is not cut silently: the gate fails closed on it.
MAX_LISTED_FILES = 3000
GITLINK = "160000"
#: a release tag: an optional `v` (or `release-`), then a PEP 440 release with an optional
#: pre/post/dev part — what a version from git tags is derived from
_RELEASE_TAG = re.compile(
    r"^(?:v|V|release-)?(\d{1,9}(?:\.\d{1,9}){0,5}(?:(?:a|b|rc)\d{1,9})?(?:\.post\d{1,9})?(?:\.dev\d{1,9})?)$"
)


@dataclass
class BranchChanges:
    """What a branch changes against its base, from `git diff -z --raw` (no quoting, renames as
    a delete and an add, mode changes included)."""

    files: list[str] = field(default_factory=list)  # every path, in git's order
    gitlinks: list[str] = field(default_factory=list)  # paths the branch makes a submodule/gitlink

    @property
    def total(self) -> int:
        return len(self.files)


def parse_raw_z(out: str) -> BranchChanges:
    """Parse `git diff --raw -z --no-renames`: `:<old mode> <new mode> <old> <new> <status>` NUL
    `<path>` NUL, repeated."""
    changes = BranchChanges()
    fields = out.split("\0")
    i = 0
    while i + 1 < len(fields):
        meta, path = fields[i], fields[i + 1]
        i += 2
        if not meta.startswith(":"):
            raise SandboxError(f"unexpected git diff output near {meta[:80]!r}", retryable=False)
        changes.files.append(path)
        if meta[1:].split(" ")[1] == GITLINK:
            changes.gitlinks.append(path)
    return changes


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
        try:
            target = (self.root / relative).resolve()
        except (RuntimeError, OSError) as exc:  # a symlink loop the sandbox left
            raise InvalidInputError(f"path {relative!r} cannot be resolved: {exc}") from None
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

    async def fetch_base(self, base: str) -> str:
        """Fetch the base branch; its commit id."""
        await git("fetch", "--quiet", UPLOAD_PACK, self.url, f"refs/heads/{base}", cwd=self.root, env=self.env)
        return await git("rev-parse", "FETCH_HEAD^{commit}", cwd=self.root)

    async def branch_changes(self, base: str) -> BranchChanges:
        """Every path this branch adds, changes, deletes or renames since it left `base`: what the
        blocked-path policy is checked against (the plan's own file list is only advice). A
        gitlink the branch adds is a sandbox violation: git would descend into it."""
        await self.fetch_base(base)
        out = await git(
            "diff", "--raw", "-z", "--no-renames", "--no-ext-diff", "--no-textconv", "--ignore-submodules=none",
            "FETCH_HEAD...HEAD", cwd=self.root, strip=False,
        )  # fmt: skip
        changes = parse_raw_z(out)
        if changes.gitlinks:
            raise SandboxError(
                f"the change adds a submodule/gitlink ({', '.join(changes.gitlinks[:5])}): git would run that "
                "repository's config; refusing it (this is an attack or a tool that vendors a git checkout)",
                retryable=False,
            )
        return changes

    async def branch_files(self, base: str) -> list[str]:
        return (await self.branch_changes(base)).files

    async def version_tag(self, rev: str) -> str | None:
        """The version the newest tag reachable from `rev` names (`v1.4.2` → `1.4.2`): what
        setuptools-scm, hatch-vcs and the like would derive from a checkout, for the export setup
        runs in (no .git). None when no tag reads as a release version (PEP 440, no local part)."""
        try:
            tag = await git(
                "describe", "--tags", "--abbrev=0", "--match=v[0-9]*", "--match=V[0-9]*", "--match=[0-9]*",
                "--match=release-[0-9]*", rev, cwd=self.root,
            )  # fmt: skip
        except GitError:
            return None
        m = _RELEASE_TAG.match(tag.strip())
        return m.group(1) if m else None

    async def export(self, rev: str, dest: Path) -> None:
        """The tree of `rev`, written to `dest` (no .git): a pristine source that no sandboxed
        code has touched. Links that would point out of `dest` are left out."""
        dest.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(prefix="tamma-export-", suffix=".tar", dir=dest.parent) as tar:
            await git("archive", "--format=tar", "-o", tar.name, rev, cwd=self.root)
            with tarfile.open(tar.name) as archive:
                if hasattr(tarfile, "data_filter"):
                    archive.extractall(dest, filter=_beneath)
                else:
                    _extract_beneath(archive, dest)
        _drop_links_out(dest)

    def refuse_nested_git(self) -> None:
        """A `.git` below the root after sandboxed code ran (a nested repository, a checkout
        inside a gitlink) is a sandbox violation: fail before git looks at the tree."""
        found = nested_git(self.root)
        if found:
            raise SandboxError(
                f"code run in the sandbox created a nested git repository ({', '.join(found[:5])}): host-side "
                "git would read its config and run what it names; refusing to stage or commit from this workspace",
                retryable=False,
            )

    async def changed_files(self) -> list[str]:
        self.refuse_nested_git()
        out = await git(
            "status", "--porcelain=v1", "-z", "--untracked-files=all", "--ignore-submodules=all", "--no-renames",
            cwd=self.root, strip=False,
        )  # fmt: skip
        return [entry[3:] for entry in out.split("\0") if len(entry) > 3]

    async def edited_files(self) -> list[str]:
        """Tracked files changed or deleted in the work tree (new files are not listed)."""
        self.refuse_nested_git()
        out = await git(
            "status", "--porcelain=v1", "-z", "--untracked-files=no", "--ignore-submodules=all", "--no-renames",
            cwd=self.root, strip=False,
        )  # fmt: skip
        return [entry[3:] for entry in out.split("\0") if len(entry) > 3]

    async def stage(self, intended: Collection[str] | None = None) -> tuple[list[str], list[str]]:
        """Stage the change: every change to a tracked file, and the new files in `intended` (the
        ones the agent wrote on purpose; None stages every new file). New files nobody meant
        (a Cargo.lock the tests made, build output, caches, egg-info) stay out. Returns what is
        staged and the new files left out."""
        self.refuse_nested_git()
        out = await git(
            "status", "--porcelain=v1", "-z", "--untracked-files=all", "--ignore-submodules=all", "--no-renames",
            cwd=self.root, strip=False,
        )  # fmt: skip
        entries = [(entry[:2], entry[3:]) for entry in out.split("\0") if len(entry) > 3]
        if intended is None:
            await git("add", "--all", cwd=self.root)
            return [path for _, path in entries], []
        wanted = {os.path.normpath(p) for p in intended}
        new = [path for code, path in entries if code == "??"]
        keep = [path for path in new if os.path.normpath(path) in wanted]
        await git("add", "--update", cwd=self.root)
        if keep:
            # literal pathspecs: a name like ":(glob)*" or "*" is a file name here, not a pattern
            await git("--literal-pathspecs", "add", "--", *keep, cwd=self.root)
        staged = [path for code, path in entries if code != "??"] + keep
        return staged, [path for path in new if path not in keep]

    async def commit_and_push(
        self, message: str, iteration: int, name: str, email: str, intended: Collection[str] | None = None
    ) -> str | None:
        """Commit the change (see `stage`) with the iteration trailer and push; None when nothing
        is staged."""
        staged, _ = await self.stage(intended)
        if not staged:
            return None
        ident = ["-c", f"user.name={name}", "-c", f"user.email={email}"]
        # The trailer is written into the message, not added with --trailer: trailer processing
        # runs `trailer.<token>.cmd` commands, which the repository's config could name.
        body = f"{message.rstrip()}\n\n{TRAILER}: {iteration}\n"
        await git(*ident, "commit", "--quiet", "--cleanup=verbatim", "-m", body, cwd=self.root)
        await git(
            "push", "--quiet", receive_pack(self.url), self.url, f"HEAD:refs/heads/{self.branch}",
            cwd=self.root, env=self.env,
        )  # fmt: skip
        return await self.head()


def _beneath(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
    """tarfile's `data` filter, but a member it refuses (a link out of the tree) is skipped
    rather than failing the whole export: real repositories do commit absolute symlinks."""
    try:
        return tarfile.data_filter(member, dest)
    except tarfile.FilterError:
        return None


def _extract_beneath(archive: tarfile.TarFile, dest: Path) -> None:
    """The `data` filter's checks by hand, for Pythons without extraction filters (they came
    in 3.11.4; Debian bookworm, our image's base, ships 3.11.2). Directories and regular files
    are written first and links last, so no write ever goes through a link; a link is made only
    when it resolves inside `dest` then, and never over an existing path. Modes lose setuid,
    setgid, sticky and group/other write; owners are not restored. Hard links, devices and FIFOs
    (git archive writes none) are skipped."""
    root = os.path.realpath(dest)

    def inside(path: str) -> bool:
        return os.path.commonpath([root, path]) == root

    links: list[tarfile.TarInfo] = []
    for member in archive.getmembers():
        parts = Path(member.name).parts
        if not parts or os.path.isabs(member.name) or ".." in parts:
            continue
        if member.issym():
            links.append(member)
            continue
        if not (member.isdir() or member.isreg()):
            continue
        if not inside(os.path.realpath(os.path.join(root, member.name))):
            continue
        member.mode &= 0o755
        member.uid = member.gid = os.getuid()
        member.uname = member.gname = ""
        archive.extract(member, dest)
    for member in links:
        path = os.path.join(root, member.name)
        parent = os.path.realpath(os.path.dirname(path))
        target = member.linkname
        if os.path.isabs(target) or not inside(parent) or os.path.lexists(path):
            continue
        if not inside(os.path.normpath(os.path.join(parent, target))):
            continue
        if not inside(os.path.realpath(os.path.join(parent, target))):
            continue
        os.symlink(target, os.path.join(parent, os.path.basename(path)))


def _drop_links_out(dest: Path) -> None:
    """A link made later can change where an earlier one leads ("l -> m/../x", then "m -> ."),
    and both extraction paths check each link only as it is made: check them all again once
    the tree is whole, until none leads out (each round removes at least one or ends)."""
    root = os.path.realpath(dest)
    links = [os.path.join(d, n) for d, dirs, files in os.walk(root) for n in dirs + files]
    links = [p for p in links if os.path.islink(p)]
    while True:
        out = [p for p in links if os.path.commonpath([root, os.path.realpath(p)]) != root]
        if not out:
            return
        for link in out:
            os.unlink(link)
            links.remove(link)


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
