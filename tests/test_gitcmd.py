"""Tamma's git calls never run code or config that a repository or the user's ~/.gitconfig holds."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tamma.agent.workspace import Workspace
from tamma.demo import make_sample_repo
from tamma.gitcmd import git, git_env
from tamma.models import PullRequest
from tamma.platforms.local import LocalPlatform, local_repo_ref


def hook(path: Path, marker: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho {path.name} ran >> {marker}\nexit 0\n")
    path.chmod(0o755)


def hostile_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user config that would redirect clones, run hooks and hand credentials out."""
    home = tmp_path / "home"
    hooks = home / "hooks"
    marker = tmp_path / "global-hook-ran"
    for name in ("pre-commit", "post-checkout", "pre-push", "post-commit", "reference-transaction"):
        hook(hooks / name, marker)
    decoy = make_sample_repo(tmp_path / "decoy")
    (home / ".gitconfig").parent.mkdir(parents=True, exist_ok=True)
    (home / ".gitconfig").write_text(
        f"[core]\n\thooksPath = {hooks}\n"
        f'[url "{decoy}"]\n\tinsteadOf = {tmp_path}/repo\n'
        f"[credential]\n\thelper = !echo ran >> {marker}\n"
    )
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    return marker


async def test_user_gitconfig_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_sample_repo(tmp_path / "repo")
    (repo / "pager.py").write_text("# the real repository\n")
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=T", "-c", "user.email=t@x", "commit", "-qam", "real"])
    subprocess.run(["git", "-C", str(repo), "branch", "feature"], check=True)
    marker = hostile_home(tmp_path, monkeypatch)
    ws = await Workspace.clone(str(repo), "feature", tmp_path / "work")
    assert (ws.root / "pager.py").read_text() == "# the real repository\n"  # no insteadOf rewrite
    (ws.root / "new.py").write_text("x = 1\n")
    await ws.commit_and_push("change", 1, "T", "t@localhost")
    assert not marker.exists()


async def test_hooks_and_fsmonitor_in_a_repository_never_run(tmp_path: Path) -> None:
    repo = make_sample_repo(tmp_path / "repo")
    subprocess.run(["git", "-C", str(repo), "branch", "feature"], check=True)
    marker = tmp_path / "repo-hook-ran"
    for name in ("pre-receive", "post-receive", "update", "push-to-checkout", "post-update", "reference-transaction"):
        hook(repo / ".git" / "hooks" / name, marker)
    fsmonitor = tmp_path / "fsmonitor.sh"
    hook(fsmonitor, marker)
    subprocess.run(["git", "-C", str(repo), "config", "core.fsmonitor", str(fsmonitor)], check=True)
    ws = await Workspace.clone(str(repo), "feature", tmp_path / "work")
    for name in ("pre-commit", "commit-msg", "post-commit", "pre-push", "post-checkout"):
        hook(ws.root / ".git" / "hooks" / name, marker)  # as sandboxed code without bwrap would
    subprocess.run(["git", "-C", str(ws.root), "config", "core.fsmonitor", str(fsmonitor)], check=True)
    (ws.root / "pager.py").write_text("# changed\n")
    await ws.changed_files()
    await ws.commit_and_push("change", 1, "T", "t@localhost")
    assert not marker.exists()


async def test_push_goes_to_the_cloned_url_even_if_origin_is_rewritten(tmp_path: Path) -> None:
    repo = make_sample_repo(tmp_path / "repo")
    elsewhere = make_sample_repo(tmp_path / "elsewhere")
    for r in (repo, elsewhere):
        subprocess.run(["git", "-C", str(r), "branch", "feature"], check=True)
    ws = await Workspace.clone(str(repo), "feature", tmp_path / "work")
    await git("remote", "set-url", "origin", str(elsewhere), cwd=ws.root)
    (ws.root / "new.py").write_text("x = 1\n")
    sha = await ws.commit_and_push("change", 1, "T", "t@localhost")
    assert await git("rev-parse", "feature", cwd=repo) == sha
    assert await git("rev-parse", "feature", cwd=elsewhere) != sha


async def test_local_merge_runs_no_hook_of_the_users_repository(tmp_path: Path) -> None:
    repo = make_sample_repo(tmp_path / "repo")
    marker = tmp_path / "merge-hook-ran"
    for name in ("pre-receive", "post-receive", "update", "push-to-checkout", "post-update", "post-merge"):
        hook(repo / ".git" / "hooks" / name, marker)
    platform = LocalPlatform(local_repo_ref(repo), tmp_path / "data")
    await platform.ensure_branch("feature", "main")
    ws = await Workspace.clone(str(repo), "feature", tmp_path / "work")
    (ws.root / "new.py").write_text("x = 1\n")
    await ws.commit_and_push("change", 1, "T", "t@localhost")
    pr: PullRequest = await platform.create_pull_request("feature", "main", "t", "b")
    merged = await platform.merge_pull_request(pr.number)
    assert merged.merged and (repo / "new.py").exists()  # updateInstead refreshed the work tree
    assert not marker.exists()


def test_auth_entries_are_kept_beside_the_safe_config() -> None:
    env = git_env({"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.extraheader", "GIT_CONFIG_VALUE_0": "AUTH x"})
    count = int(env["GIT_CONFIG_COUNT"])
    pairs = {env[f"GIT_CONFIG_KEY_{i}"]: env[f"GIT_CONFIG_VALUE_{i}"] for i in range(count)}
    assert pairs["http.extraheader"] == "AUTH x" and pairs["core.hooksPath"] == "/dev/null"
    assert env["GIT_CONFIG_GLOBAL"] == "/dev/null" and env["GIT_CONFIG_NOSYSTEM"] == "1"
    assert pairs["protocol.allow"] == "never" and pairs["protocol.file.allow"] == "always"
