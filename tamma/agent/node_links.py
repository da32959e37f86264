"""node_modules for one run: setup installed the packages into the cached environment; each run
shows them in its fresh workspace, and takes the links away afterwards so they are never committed.

A plain project gets one link, `node_modules` → the environment's. A workspace (npm, yarn, pnpm
with the hoisted linker) is different: the install links the workspace's own packages into
node_modules by *relative* links (`@scope/pkg → ../../packages/pkg`), which point nowhere once
node_modules has moved into the environment. So a workspace run gets a real `node_modules` folder
of links: each of the workspace's own packages by the same relative link (now resolved in this
workspace, with this change's code), everything else to the environment. Members' own
node_modules (versions that conflict with the root's; pnpm's links to sibling packages), moved
to `<env>/members/<path>` by setup, are shown in their folders the same way.

No package manager builds such a view of an existing install, so it is made here.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
from pathlib import Path

from tamma.agent.safefs import mkdir_beneath, remove_beneath, symlink_beneath

#: setup's last step: node_modules out of the source it ran in (thrown away) into the environment
KEEP_NODE_MODULES = (
    'if [ -d node_modules ]; then rm -rf "$VIRTUAL_ENV/node_modules" && mv node_modules "$VIRTUAL_ENV/"; fi'
    ' && rm -rf "$VIRTUAL_ENV/members"'
    r" && find . -maxdepth 4 \( -path ./.git -o -path ./node_modules \) -prune"
    " -o -type d -name node_modules -prune -print"
    ' | while IFS= read -r d; do m="$VIRTUAL_ENV/members/${d#./}";'
    ' mkdir -p "${m%/node_modules}" && mv "$d" "$m"; done'
)

_MEMBER_DEPTH = 4  # as deep as setup's find looks
_MAX_MEMBERS = 200


def _workspace_link(entry: Path, where: str, name: str) -> str | None:
    """The relative target of `entry` (`where`/`name`, `where` being a node_modules folder's path
    in the repository) when it is one of the workspace's own packages: a link that leaves that
    node_modules but stays in the repository."""
    if not entry.is_symlink():
        return None
    target = os.readlink(entry)
    if posixpath.isabs(target):
        return None
    landed = posixpath.normpath(posixpath.join(where, posixpath.dirname(name), target))
    if landed == ".." or landed.startswith("../") or landed == where or landed.startswith(f"{where}/"):
        return None
    return target


def _own_packages(modules: Path, where: str) -> dict[str, str]:
    """The workspace's own packages in an installed node_modules: name → relative target."""
    found: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for entry in modules.iterdir():
            if entry.name.startswith("@") and entry.is_dir() and not entry.is_symlink():
                for scoped in entry.iterdir():
                    name = f"{entry.name}/{scoped.name}"
                    if (target := _workspace_link(scoped, where, name)) is not None:
                        found[name] = target
            elif (target := _workspace_link(entry, where, entry.name)) is not None:
                found[entry.name] = target
    return found


def _show(root: Path, where: str, modules: Path, inside: str) -> bool:
    """Show the installed `modules` at `where` in the workspace (its folder reached through no
    link): one link to `inside`, or a folder of links when it holds workspace packages."""
    own = _own_packages(modules, where)
    if not own:
        return symlink_beneath(root, where, inside)
    if not mkdir_beneath(root, where):
        return False
    scopes = {name.split("/")[0] for name in own if "/" in name}
    with contextlib.suppress(OSError):
        for entry in modules.iterdir():
            if entry.name in scopes:
                mkdir_beneath(root, f"{where}/{entry.name}")
                names = [f"{entry.name}/{scoped.name}" for scoped in entry.iterdir()]
            else:
                names = [entry.name]
            for name in names:
                symlink_beneath(root, f"{where}/{name}", own.get(name, f"{inside}/{name}"))
    return True


def link_node_modules(root: Path, env_dir: Path | None, inside: str) -> list[Path]:
    """Show the environment's node_modules (`inside`: where the run sees the environment) in the
    workspace `root`; returns what was made, for `unlink_node_modules`. A node_modules the
    workspace already has is left alone."""
    if env_dir is None:
        return []
    made: list[Path] = []
    modules = env_dir / "node_modules"
    if modules.is_dir() and not modules.is_symlink() and _show(root, "node_modules", modules, f"{inside}/node_modules"):
        made.append(root / "node_modules")
    members = env_dir / "members"
    if not members.is_dir() or members.is_symlink():
        return made
    # members' own node_modules, each back in its folder (a folder reached through a link, or one
    # this workspace does not have, gets nothing)
    for here, dirs, _ in os.walk(members):
        relative = os.path.relpath(here, members)
        depth = 0 if relative == "." else relative.count(os.sep) + 1
        if "node_modules" in dirs:
            dirs.remove("node_modules")
            installed = Path(here) / "node_modules"
            where = posixpath.join(relative.replace(os.sep, "/"), "node_modules")
            # a link where setup should have left a folder is not read
            if not installed.is_symlink() and _show(root, where, installed, f"{inside}/members/{where}"):
                made.append(root / where)
            if len(made) >= _MAX_MEMBERS:
                break
        if depth >= _MEMBER_DEPTH - 1:
            dirs.clear()
    return made


def unlink_node_modules(root: Path, made: list[Path]) -> None:
    """Take away what `link_node_modules` made, reaching each through no link: the run may have
    swapped a member's folder for a link, and its target is never touched."""
    for path in reversed(made):
        with contextlib.suppress(OSError):
            remove_beneath(root, str(path.relative_to(root)))
