"""Host-side file access to trees that sandboxed code could have written: never follow a link.

Sandboxed code (a test, a setup script) can leave a symlink where Tamma later reads or writes —
`pyproject.toml -> ~/.config/tamma/config.toml`, an environment's marker file -> the worker's
config — or a FIFO that blocks a read forever. Every host-side access to the workspace, a
repository environment or a build source goes through these: each path component is opened with
O_NOFOLLOW relative to the directory before it (openat), only regular files are read, reads are
bounded, and writes never follow a link or land outside the directory they name. The standard
library has no "open beneath this directory without following links" (Linux's openat2
RESOLVE_BENEATH is not exposed), which is why this is written by hand.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePath(OSError):
    """A path that is a link, not a regular file, or leaves the directory it was named in."""


@contextlib.contextmanager
def _dir_fd(root: Path, parts: tuple[str, ...]) -> Iterator[int]:
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW)
    try:
        for part in parts:
            if part in ("", ".", ".."):
                raise UnsafePath(f"{'/'.join(parts)!r} is not a plain relative path")
            try:
                nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                raise
            except OSError as exc:
                raise UnsafePath(f"{part!r} is not a directory (or is a link): {exc.strerror}") from None
            os.close(fd)
            fd = nxt
        yield fd
    finally:
        os.close(fd)


def read_beneath(root: Path, relative: str, limit: int) -> bytes | None:
    """The bytes of the regular file `relative` under `root` (at most `limit`), or None when it
    does not exist. A link anywhere on the way, a FIFO, a device or a larger file is refused."""
    parts = tuple(Path(relative).parts)
    if not parts or Path(relative).is_absolute():
        raise UnsafePath(f"{relative!r} is not a relative path")
    try:
        with _dir_fd(root, parts[:-1]) as dfd:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NONBLOCK | _NOFOLLOW, dir_fd=dfd)
    except FileNotFoundError:
        return None
    except UnsafePath:
        raise
    except OSError as exc:
        raise UnsafePath(f"{relative} cannot be opened without following a link: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePath(f"{relative} is not a regular file")
        if st.st_size > limit:
            raise UnsafePath(f"{relative} is larger than {limit} bytes")
        return fh.read(limit + 1)[:limit]


def read_text_beneath(root: Path, relative: str, limit: int = 2_000_000) -> str | None:
    """`read_beneath` decoded (errors replaced); None for a missing or unsafe file."""
    try:
        data = read_beneath(root, relative, limit)
    except UnsafePath:
        return None
    return None if data is None else data.decode("utf-8", errors="replace")


def is_regular_beneath(root: Path, relative: str) -> bool:
    """True when `relative` under `root` is a regular file reached through no link."""
    try:
        with _dir_fd(root, tuple(Path(relative).parts[:-1])) as dfd:
            st = os.stat(Path(relative).name, dir_fd=dfd, follow_symlinks=False)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode)


def mkdir_beneath(root: Path, relative: str) -> bool:
    """Make the folder `relative` under `root`, reaching its parent through no link. False
    (nothing made) when the parent is missing or unsafe, or the name is taken."""
    parts = tuple(Path(relative).parts)
    if not parts or Path(relative).is_absolute():
        return False
    try:
        with _dir_fd(root, parts[:-1]) as dfd:
            os.mkdir(parts[-1], 0o755, dir_fd=dfd)
    except OSError:
        return False
    return True


def remove_beneath(root: Path, relative: str) -> None:
    """Remove `relative` under `root` (a link, a file, or a folder and what is in it), reaching it
    through no link: a folder on the way swapped for a link since (by code the sandbox ran) makes
    this remove nothing, never something the link points at. Missing: nothing to do."""
    parts = tuple(Path(relative).parts)
    if not parts or Path(relative).is_absolute():
        raise UnsafePath(f"{relative!r} is not a relative path")
    try:
        with _dir_fd(root, parts[:-1]) as dfd:
            st = os.stat(parts[-1], dir_fd=dfd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(parts[-1], dir_fd=dfd)
            else:
                os.unlink(parts[-1], dir_fd=dfd)
    except FileNotFoundError:
        return


def symlink_beneath(root: Path, relative: str, target: str) -> bool:
    """Make `relative` under `root` a link to `target`, reaching its folder through no link.
    False (nothing made) when that folder is missing or unsafe, or the name is taken."""
    parts = tuple(Path(relative).parts)
    if not parts or Path(relative).is_absolute():
        return False
    try:
        with _dir_fd(root, parts[:-1]) as dfd:
            os.symlink(target, parts[-1], dir_fd=dfd)
    except OSError:
        return False
    return True


def write_beneath(root: Path, relative: str, data: bytes) -> bool:
    """Create the regular file `relative` under `root` holding `data`, its folder reached through
    no link. False (nothing written) when the folder is missing or unsafe, or the name is taken."""
    parts = tuple(Path(relative).parts)
    if not parts or Path(relative).is_absolute():
        return False
    try:
        with _dir_fd(root, parts[:-1]) as dfd:
            fd = os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644, dir_fd=dfd)
    except OSError:
        return False
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return True


def write_file(path: Path, data: bytes, *, exclusive: bool = False) -> None:
    """Write `data` to `path` without following a link at `path` (O_NOFOLLOW) — the directory
    must be one Tamma made. With `exclusive`, refuse an existing file."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC) | _NOFOLLOW
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        raise UnsafePath(f"refusing to write {path}: {exc.strerror} (a link or an existing file)") from None
    with os.fdopen(fd, "wb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise UnsafePath(f"refusing to write {path}: not a regular file")
        fh.write(data)


def nested_git(root: Path, limit: int = 20) -> list[str]:
    """Every `.git` (directory, file or link) below `root` other than its own: a nested
    repository or a gitlink's checkout that git would descend into. Links are not followed."""
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        top = here == root
        for name in (*dirnames, *filenames):
            if name == ".git" and not top:
                found.append(str((here / name).relative_to(root)))
        dirnames[:] = [d for d in dirnames if not (d == ".git" and top) and d != ".git"]
        if len(found) >= limit:
            break
    return found


def copy_tree(src: Path, dest: Path) -> None:
    """Copy `src` to `dest` without its .git: links copied as links (never followed), and only
    directories, regular files and links (a FIFO would block the copy)."""

    def skip(folder: str, names: list[str]) -> set[str]:
        out = {".git"}
        for name in names:
            mode = os.lstat(os.path.join(folder, name)).st_mode
            if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
                out.add(name)
        return out

    shutil.copytree(src, dest, symlinks=True, ignore=skip)


def private_dir(path: Path) -> Path:
    """`path` as a directory only its owner can enter (0700): Tamma's data dir holds the
    Temporal database (issue texts, plans, model answers), clones of private repositories, test
    logs and environments. A directory made by an older version is tightened when it is ours."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = path.stat()
    if st.st_uid == os.getuid() and st.st_mode & 0o077:
        path.chmod(0o700)
    return path
