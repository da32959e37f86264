"""Host-side access to what sandboxed code could write: no link is followed, no FIFO is read,
reads are bounded; nested repositories are found; a tampered environment is rebuilt."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tamma.agent.environment import prepare_environment
from tamma.agent.safefs import UnsafePath, copy_tree, is_regular_beneath, nested_git, read_beneath, write_file
from tamma.agent.sandbox import SandboxPolicy, probe_bwrap
from tamma.redact import Redactor


def test_reads_refuse_links_fifos_and_large_files(tmp_path: Path) -> None:
    secret = tmp_path / "secret.toml"
    secret.write_text("token = 'x'\n")
    root = tmp_path / "ws"
    (root / "sub").mkdir(parents=True)
    (root / "pyproject.toml").symlink_to(secret)
    (root / "linkdir").symlink_to(tmp_path)
    os.mkfifo(root / "fifo")
    (root / "big").write_bytes(b"x" * 2000)
    (root / "sub" / "ok.txt").write_text("fine")
    assert read_beneath(root, "sub/ok.txt", 100) == b"fine"
    assert read_beneath(root, "missing.txt", 100) is None
    for bad in ("pyproject.toml", "linkdir/secret.toml", "fifo", "big"):
        with pytest.raises(UnsafePath):
            read_beneath(root, bad, 1000)
    assert not is_regular_beneath(root, "pyproject.toml") and is_regular_beneath(root, "sub/ok.txt")


def test_writes_never_follow_a_link(tmp_path: Path) -> None:
    victim = tmp_path / "config.toml"
    victim.write_text("keep")
    (tmp_path / "marker").symlink_to(victim)
    with pytest.raises(UnsafePath):
        write_file(tmp_path / "marker", b"overwritten")
    assert victim.read_text() == "keep"
    write_file(tmp_path / "new", b"ok", exclusive=True)
    with pytest.raises(UnsafePath):
        write_file(tmp_path / "new", b"again", exclusive=True)


def test_nested_git_is_found_and_copies_skip_it(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    (root / ".git").mkdir(parents=True)
    (root / "vendor" / "x" / ".git").mkdir(parents=True)
    (root / "sub").mkdir()
    (root / "sub" / ".git").write_text("gitdir: /elsewhere\n")
    (root / "link").symlink_to(tmp_path / "elsewhere")
    (root / "lnk2").mkdir()
    (root / "lnk2" / ".git").symlink_to(tmp_path)
    assert sorted(nested_git(root)) == ["lnk2/.git", "sub/.git", "vendor/x/.git"]
    clean = tmp_path / "clean"
    (clean / ".git").mkdir(parents=True)
    assert nested_git(clean) == []
    os.mkfifo(clean / "fifo")
    (clean / "a.txt").write_text("a")
    copy_tree(clean, tmp_path / "copy")
    assert sorted(p.name for p in (tmp_path / "copy").iterdir()) == ["a.txt"]


@pytest.mark.skipif(not probe_bwrap()[0], reason="bwrap unavailable")
async def test_an_environment_changed_after_it_was_built_is_rebuilt(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "requirements.txt").write_text("# none\n")
    setup = 'echo built >> "$VIRTUAL_ENV/log"'
    envs, policy = tmp_path / "envs", SandboxPolicy(timeout_s=60)
    first = await prepare_environment(src, "local:x", setup, envs, policy, Redactor(), [])
    assert first.env_dir is not None and not first.cached
    again = await prepare_environment(src, "local:x", setup, envs, policy, Redactor(), [])
    assert again.cached and again.env_dir == first.env_dir
    (first.env_dir / "backdoor.pth").write_text("import os\n")  # what a poisoned cache looks like
    rebuilt = await prepare_environment(src, "local:x", setup, envs, policy, Redactor(), [])
    assert not rebuilt.cached and rebuilt.env_dir is not None
    assert not (rebuilt.env_dir / "backdoor.pth").exists()
    assert (rebuilt.env_dir / "log").read_text() == "built\n"
    # A task's own lockfile edit is a key of its own, never the shared one.
    scoped = await prepare_environment(src, "local:x", setup, envs, policy, Redactor(), [], scope="local:x:tamma/1")
    assert scoped.env_dir != first.env_dir and "-task-" in str(scoped.env_dir)


def test_private_dir_is_made_0700_and_an_older_loose_one_is_tightened(tmp_path: Path) -> None:
    from tamma.agent.safefs import private_dir

    fresh = private_dir(tmp_path / "a" / "data")
    assert fresh.stat().st_mode & 0o777 == 0o700
    loose = tmp_path / "old"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    private_dir(loose)
    assert loose.stat().st_mode & 0o777 == 0o700
