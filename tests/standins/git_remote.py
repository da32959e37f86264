"""A bare git repository on disk standing in for a forge's git endpoint, with the few
server-side operations a forge performs on it (create a branch, merge a pull request)."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path


def git(cwd: Path, *args: str, check: bool = True) -> str:
    out = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, check=False)
    if check and out.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {out.stderr}")
    return out.stdout.strip()


class BareRemote:
    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def from_worktree(cls, source: Path, target: Path) -> BareRemote:
        git(source.parent, "clone", "-q", "--bare", str(source), str(target))
        return cls(target)

    def sha(self, branch: str) -> str | None:
        out = git(self.path, "rev-parse", "--verify", "-q", f"refs/heads/{branch}", check=False)
        return out or None

    def create_branch(self, branch: str, sha: str) -> None:
        git(self.path, "update-ref", f"refs/heads/{branch}", sha)

    def push_file(self, branch: str, name: str, text: str, scratch: Path) -> None:
        """Commit `name` with `text` on `branch` from a fresh clone under `scratch`, and push."""
        work = Path(tempfile.mkdtemp(prefix="push-", dir=scratch))
        git(scratch, "clone", "-q", "--branch", branch, str(self.path), str(work))
        (work / name).write_text(text)
        git(work, "add", name)
        git(work, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", f"add {name}")
        git(work, "push", "-q", "origin", f"HEAD:{branch}")

    def branches(self) -> list[str]:
        return git(self.path, "for-each-ref", "--format=%(refname:short)", "refs/heads").split()

    def merge(self, head: str, base: str, message: str, squash: bool) -> str | None:
        """Merge `head` into `base` like a forge does; None on conflict."""
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp) / "w"
            git(Path(tmp), "clone", "-q", "--branch", base, str(self.path), str(work))
            ident = ["-c", "user.name=Forge", "-c", "user.email=forge@localhost"]
            git(work, "fetch", "-q", "origin", head)
            if squash:
                if (
                    subprocess.run(
                        ["git", "-C", str(work), "merge", "--squash", "FETCH_HEAD"], capture_output=True, check=False
                    ).returncode
                    != 0
                ):
                    return None
                git(work, *ident, "commit", "-q", "-m", message)
            elif (
                subprocess.run(
                    ["git", "-C", str(work), *ident, "merge", "--no-ff", "-m", message, "FETCH_HEAD"],
                    capture_output=True,
                    check=False,
                ).returncode
                != 0
            ):
                return None
            git(work, "push", "-q", "origin", f"HEAD:refs/heads/{base}")
            return git(work, "rev-parse", "HEAD")
