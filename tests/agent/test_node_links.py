"""node_modules shown to a run: one link for a plain project, a folder of links for a workspace
(its own packages by their relative links, resolved in this workspace; the rest to the
environment), members' own node_modules back in their folders; all of it gone afterwards.
The environment is written by setup, which ran the repository's install scripts: its links are
treated as hostile (one that leaves the repository is never copied into the workspace)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tamma.agent.node_links import KEEP_NODE_MODULES, link_node_modules, unlink_node_modules

INSIDE = "/tamma/env"


def _env(tmp_path: Path) -> Path:
    env = tmp_path / "env"
    modules = env / "node_modules"
    (modules / "@s").mkdir(parents=True)
    (modules / "ms").mkdir()
    (modules / ".bin").mkdir()
    os.symlink("../../packages/a", modules / "@s" / "a")  # the workspace's own package
    (modules / "@s" / "dep").mkdir()  # a registry package in the same scope
    os.symlink("../../../../etc", modules / "evil")  # leaves the repository
    os.symlink("/etc", modules / "abs")
    os.symlink("ms", modules / "alias")  # stays in node_modules
    return env


def _workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    (root / "packages" / "a").mkdir(parents=True)
    (root / "packages" / "a" / "index.js").write_text("module.exports = 1;\n")
    return root


def test_a_workspace_gets_a_folder_of_links_its_own_packages_resolved_here(tmp_path: Path) -> None:
    env, root = _env(tmp_path), _workspace(tmp_path)
    made = link_node_modules(root, env, INSIDE)
    modules = root / "node_modules"
    assert modules.is_dir() and not modules.is_symlink()
    assert os.readlink(modules / "@s" / "a") == "../../packages/a"
    assert (modules / "@s" / "a" / "index.js").read_text() == "module.exports = 1;\n"  # this workspace's code
    assert os.readlink(modules / "@s" / "dep") == f"{INSIDE}/node_modules/@s/dep"
    assert os.readlink(modules / "ms") == f"{INSIDE}/node_modules/ms"
    assert os.readlink(modules / ".bin") == f"{INSIDE}/node_modules/.bin"
    assert os.readlink(modules / "alias") == f"{INSIDE}/node_modules/alias"
    # links that leave the repository are not copied: they point into the environment, as before
    assert os.readlink(modules / "evil") == f"{INSIDE}/node_modules/evil"
    assert os.readlink(modules / "abs") == f"{INSIDE}/node_modules/abs"
    unlink_node_modules(root, made)
    assert sorted(p.name for p in root.iterdir()) == ["packages"]
    assert (env / "node_modules" / "@s" / "dep").is_dir()  # the environment is untouched


def test_a_plain_project_gets_one_link_and_an_existing_node_modules_is_left_alone(tmp_path: Path) -> None:
    env = tmp_path / "env"
    (env / "node_modules" / "ms").mkdir(parents=True)
    root = tmp_path / "ws"
    root.mkdir()
    made = link_node_modules(root, env, INSIDE)
    assert made == [root / "node_modules"] and os.readlink(root / "node_modules") == f"{INSIDE}/node_modules"
    unlink_node_modules(root, made)
    assert not os.path.lexists(root / "node_modules")
    (root / "node_modules").mkdir()
    (root / "node_modules" / "mine").write_text("kept")
    assert link_node_modules(root, env, INSIDE) == []
    assert (root / "node_modules" / "mine").read_text() == "kept"
    assert link_node_modules(root, None, INSIDE) == []  # no environment: nothing


def test_members_own_node_modules_go_back_to_their_folders_never_through_a_link(tmp_path: Path) -> None:
    env, root = _env(tmp_path), _workspace(tmp_path)
    for member in ("packages/a", "packages/b", "packages/c", "a/b/c/d/e"):
        (env / "members" / member / "node_modules" / "x").mkdir(parents=True)
    (root / "packages" / "b").mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, root / "packages" / "c")  # a member folder that is a link: nothing goes through it
    (root / "a" / "b" / "c" / "d" / "e").mkdir(parents=True)  # deeper than setup looks
    made = link_node_modules(root, env, INSIDE)
    assert os.readlink(root / "packages/a/node_modules") == f"{INSIDE}/members/packages/a/node_modules"
    assert os.readlink(root / "packages/b/node_modules") == f"{INSIDE}/members/packages/b/node_modules"
    assert list(outside.iterdir()) == []
    assert not os.path.lexists(root / "a/b/c/d/e/node_modules")
    unlink_node_modules(root, made)
    assert not os.path.lexists(root / "packages/a/node_modules") and not os.path.lexists(root / "node_modules")


def test_setup_moves_every_node_modules_into_the_environment(tmp_path: Path) -> None:
    src, env = tmp_path / "src", tmp_path / "env"
    for folder in ("node_modules/ms", "packages/b/node_modules/ms", "packages/a/src", ".git/node_modules"):
        (src / folder).mkdir(parents=True)
    (src / "packages/b/node_modules/ms/index.js").write_text("1")
    env.mkdir()
    done = subprocess.run(
        ["sh", "-c", KEEP_NODE_MODULES], cwd=src, env={**os.environ, "VIRTUAL_ENV": str(env)}, capture_output=True
    )
    assert done.returncode == 0, done.stderr
    assert (env / "node_modules/ms").is_dir()
    assert (env / "members/packages/b/node_modules/ms/index.js").read_text() == "1"
    assert not (src / "node_modules").exists() and not (src / "packages/b/node_modules").exists()
    assert (src / ".git/node_modules").is_dir()  # git's folder is never searched


def test_a_pnpm_member_s_links_to_its_siblings_resolve_in_this_workspace(tmp_path: Path) -> None:
    """pnpm links a member's workspace dependencies in the member's own node_modules."""
    env, root = tmp_path / "env", _workspace(tmp_path)
    (root / "packages" / "report").mkdir()
    modules = env / "members" / "packages" / "report" / "node_modules"
    (modules / "@fixture").mkdir(parents=True)
    (modules / "ms").mkdir()
    os.symlink("../../../a", modules / "@fixture" / "bytes")
    os.symlink("../../../../../../etc", modules / "@fixture" / "evil")
    made = link_node_modules(root, env, INSIDE)
    shown = root / "packages" / "report" / "node_modules"
    assert shown.is_dir() and not shown.is_symlink() and made == [shown]
    assert (shown / "@fixture" / "bytes" / "index.js").read_text() == "module.exports = 1;\n"
    assert os.readlink(shown / "@fixture" / "evil") == f"{INSIDE}/members/packages/report/node_modules/@fixture/evil"
    assert os.readlink(shown / "ms") == f"{INSIDE}/members/packages/report/node_modules/ms"
    unlink_node_modules(root, made)
    assert not os.path.lexists(shown)


def test_a_member_folder_swapped_for_a_link_during_the_run_makes_cleanup_touch_nothing_it_points_at(
    tmp_path: Path,
) -> None:
    """The tests run hostile code with the workspace writable: it replaces packages/b (where a
    node_modules folder of links was made) with a link to a folder of the user's that has a
    node_modules of its own. Taking the links away must not delete that."""
    env, root = _env(tmp_path), _workspace(tmp_path)
    (root / "packages" / "b").mkdir()
    members = env / "members" / "packages" / "b" / "node_modules"
    (members / "@s").mkdir(parents=True)
    os.symlink("../../../a", members / "@s" / "a")  # makes packages/b/node_modules a real folder
    made = link_node_modules(root, env, INSIDE)
    assert (root / "packages/b/node_modules").is_dir() and not (root / "packages/b/node_modules").is_symlink()
    precious = tmp_path / "home" / "project"
    (precious / "node_modules" / "dep").mkdir(parents=True)
    (precious / "node_modules" / "dep" / "index.js").write_text("kept")
    (precious / "node_modules.txt").write_text("kept")
    # what the run did: the member's folder is now a link to the user's project
    shutil.rmtree(root / "packages" / "b")
    os.symlink(precious, root / "packages" / "b")
    # and the root's node_modules folder is now a link too
    shutil.rmtree(root / "node_modules")
    os.symlink(precious / "node_modules", root / "node_modules")
    unlink_node_modules(root, made)
    assert (precious / "node_modules" / "dep" / "index.js").read_text() == "kept"
    assert not os.path.lexists(root / "node_modules")  # the link itself is gone, its target is not
    assert (root / "packages" / "b").is_symlink()  # not ours to remove
