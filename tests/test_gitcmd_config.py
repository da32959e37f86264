"""Host-side git never runs a command that a repository's config names: one case per key class,
each also run with plain git as the control (the planted config does run there, so the test can
fail), and one with every class planted at once in the workspace, a file it includes and the
user's repository, driven through Tamma's own commit, push and local merge."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from tamma.agent.workspace import Workspace
from tamma.demo import make_sample_repo
from tamma.gitcmd import git, neutralising
from tamma.models import PullRequest
from tamma.platforms.local import LocalPlatform, local_repo_ref

IDENT = ["-c", "user.name=T", "-c", "user.email=t@x"]


def payload(marker: Path, name: str) -> str:
    """A shell command that records that it ran (and passes stdin through, as a filter would)."""
    return f"sh -c 'echo {name} >> {marker}; cat'"


def plant(repo: Path, marker: Path) -> dict[str, tuple[str, list[str]]]:
    """Per key class: (config text, a git command that would run it)."""
    p = lambda n: payload(marker, n).replace("'", '"')  # noqa: E731
    return {
        "filter-clean": (f'[filter "x"]\n\tclean = {p("clean")}\n\trequired = true\n', ["add", "--all"]),
        "filter-process": (f'[filter "x"]\n\tprocess = {p("process")}\n', ["add", "--all"]),
        "textconv": (f'[diff "x"]\n\ttextconv = {p("textconv")}\n', ["diff", "HEAD"]),
        "diff-driver": (f'[diff "x"]\n\tcommand = {p("diffcmd")}\n', ["diff", "HEAD"]),
        "diff-external": (f"[diff]\n\texternal = {p('external')}\n", ["diff", "HEAD"]),
        "trailer-cmd": (
            f'[trailer "Tamma-Iteration"]\n\tcmd = {p("trailer")}\n',
            [*IDENT, "commit", "-qam", "m", "--trailer", "Tamma-Iteration: 1"],
        ),
        "gpg-program": (
            f"[commit]\n\tgpgSign = true\n[gpg]\n\tprogram = {marker.parent / 'gpg.sh'}\n",
            [*IDENT, "commit", "-qam", "m"],
        ),
        "editor": (f"[core]\n\teditor = {p('editor')}\n", [*IDENT, "commit", "-qa"]),
        "include": (f"[include]\n\tpath = {repo / 'included.cfg'}\n", ["add", "--all"]),
        "attributes-file": (
            f"[core]\n\tattributesFile = {repo / 'attrs'}\n[filter \"y\"]\n\tclean = {p('attrfile')}\n",
            ["add", "--all"],
        ),
    }


def fresh_repo(tmp_path: Path, name: str, marker: Path) -> Path:
    repo = make_sample_repo(tmp_path / name)
    (repo / ".gitattributes").write_text("*.py filter=x diff=x\n")
    (repo / "attrs").write_text("*.md filter=y\n")
    (repo / "included.cfg").write_text(f'[filter "x"]\n\tclean = {payload(marker, "included").replace(chr(39), chr(34))}\n')
    gpg = marker.parent / "gpg.sh"
    gpg.write_text(f"#!/bin/sh\necho gpg >> {marker}\nexit 1\n")
    gpg.chmod(0o755)
    subprocess.run(["git", *IDENT, "add", "--all"], cwd=repo, check=True)
    subprocess.run(["git", *IDENT, "commit", "-qm", "attrs"], cwd=repo, check=True)
    (repo / "pager.py").write_text("# changed\n")
    (repo / "README.md").write_text("# changed\n")
    return repo


@pytest.mark.parametrize(
    "case",
    [
        "filter-clean",
        "filter-process",
        "textconv",
        "diff-driver",
        "diff-external",
        "trailer-cmd",
        "gpg-program",
        "editor",
        "include",
        "attributes-file",
    ],
)
async def test_a_command_named_in_repository_config_never_runs(tmp_path: Path, case: str) -> None:
    marker = tmp_path / "ran"
    ours, control = fresh_repo(tmp_path, "ours", marker), fresh_repo(tmp_path, "control", marker)
    config, command = plant(ours, marker)[case]
    for repo in (ours, control):
        with (repo / ".git" / "config").open("a") as fh:
            fh.write(config)
    # The control: plain git (with no user config) runs what the repository names.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "GIT_CONFIG_NOSYSTEM": "1"}
    subprocess.run(["git", *command], cwd=control, env=env, capture_output=True, check=False, timeout=30)
    assert marker.exists(), f"the planted {case} did not run under plain git: the test proves nothing"
    marker.unlink()
    await git(*command, cwd=ours, check=False)
    assert not marker.exists(), f"Tamma's git ran the repository's {case}: {marker.read_text()}"


def test_every_command_naming_key_is_neutralised() -> None:
    keys = [
        "filter.lfs.clean", "filter.lfs.smudge", "filter.lfs.process", "filter.lfs.required",
        "diff.x.textconv", "diff.x.command", "merge.x.driver", "credential.https://h.helper",
        "gpg.program", "gpg.ssh.program", "gpg.ssh.defaultkeycommand", "trailer.a.cmd", "trailer.a.command",
        "pager.log", "core.pager", "core.editor", "sequence.editor", "core.sshcommand", "core.askpass",
        "remote.origin.receivepack", "remote.origin.uploadpack", "submodule.s.update", "difftool.x.cmd",
        "core.alternaterefscommand",
    ]  # fmt: skip
    got = dict(neutralising(keys))
    assert set(got) == set(keys)
    assert got["filter.lfs.required"] == "false" and got["pager.log"] == "false"
    assert got["submodule.s.update"] == "none" and got["filter.lfs.clean"] == ""
    # Keys that name no command are left alone.
    assert neutralising(["user.name", "core.bare", "remote.origin.url", "branch.main.merge"]) == []


async def test_all_at_once_in_the_workspace_an_include_and_the_users_repository(tmp_path: Path) -> None:
    """Every class planted in the user's repository (which Tamma clones, pushes into with
    updateInstead and merges into) and in the workspace's own .git/config: a task's whole git
    life runs none of them, and the change still lands."""
    marker = tmp_path / "ran"
    repo = fresh_repo(tmp_path, "repo", marker)
    subprocess.run(["git", "checkout", "-q", "--", "pager.py", "README.md"], cwd=repo, check=True)
    everything = "".join(config for config, _ in plant(repo, marker).values())
    everything += f'[merge "x"]\n\tdriver = {payload(marker, "merge")}\n'
    (repo / ".git" / "config").open("a").write(everything)
    subprocess.run(["git", "branch", "feature"], cwd=repo, check=True, env={"GIT_CONFIG_NOSYSTEM": "1"})
    platform = LocalPlatform(local_repo_ref(repo), tmp_path / "data")
    ws = await Workspace.clone(str(repo), "feature", tmp_path / "work")
    (ws.root / ".git" / "config").open("a").write(everything)
    (ws.root / "pager.py").write_text("def paginate(items, page, per_page):\n    return items\n")
    sha = await ws.commit_and_push("change", 1, "T", "t@x")
    assert sha is not None
    assert await ws.branch_files("main") == ["pager.py"]
    await ws.diff_from("main", 100_000)
    pr = PullRequest(number=1, branch="feature", base="main", title="t")
    platform.store.write("pulls", 1, {**pr.model_dump(), "reviews": [], "head_sha": sha})
    result = await platform.merge_pull_request(1, sha)
    assert result.merged
    assert not marker.exists(), marker.read_text()
    shown = subprocess.run(["git", "show", "main:pager.py"], cwd=repo, capture_output=True, text=True).stdout
    assert "return items" in shown


def test_subsection_names_cannot_inject_into_the_receive_pack_command(tmp_path: Path) -> None:
    from tamma.gitcmd import receive_pack

    marker = tmp_path / "injected"
    repo = make_sample_repo(tmp_path / "repo")
    (repo / ".git" / "config").open("a").write(f'[filter "x; touch {marker}; #"]\n\tclean = cat\n')
    arg = receive_pack(str(repo))
    command = arg.split("=", 1)[1]
    subprocess.run(["sh", "-c", f"{command} --help"], capture_output=True, check=False, timeout=30)
    assert not marker.exists()
    assert shlex.quote(f"filter.x; touch {marker}; #.clean=") in command
