"""Which command runs a repository's tests, and why that one.

The command is a shell line run by /bin/sh *inside* the sandbox, so what a person would type
(`make deps && pytest -q`) works, and nothing it contains runs outside the boundary.

Precedence, strongest first: ``agent.test_command``; the repository's ``.tamma/config.toml``
(``test_command``); a test command its guidance files give (AGENTS.md, CLAUDE.md,
CONTRIBUTING.md, ``.github/copilot-instructions.md``, in a code block); the ``run:`` steps of a
CI workflow that look like a test command; then the manifest heuristics (Node's ``test``
script, Cargo, Go modules, CMake with tests, a Makefile ``test``/``check`` target, Python with
pytest or unittest). Every read refuses links and FIFOs: the sandbox may have written the tree.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from tamma.agent.safefs import is_regular_beneath, read_text_beneath
from tamma.errors import TOO_DEEP

GUIDANCE_FILES = ("AGENTS.md", "CLAUDE.md", "CONTRIBUTING.md", ".github/copilot-instructions.md")
PYTEST = "python3 -m pytest -q -rfE -p no:cacheprovider"
UNITTEST = "python3 -m unittest discover -v"
# What a test command starts with, in a guidance file or a CI step. tox and nox are left out:
# they build their own environments from the network, which the test sandbox does not have.
_TEST_LINE = re.compile(
    r"^(?:(?:uv run|poetry run|pdm run|hatch run|pipenv run|python3? -m)\s+)?"
    r"(?:pytest|unittest|(?:npm|pnpm|yarn|bun)(?: run)? test|npx (?:jest|vitest|mocha)|node --test|"
    r"cargo test|go test|make (?:test|check)|ctest|meson test|mvn (?:-\S+ )*test|gradle test|\./gradlew test)\b"
)
# A shell line in a code block that a sentence about testing introduces ("Run the tests with:").
_INTRODUCED = re.compile(r"\btest(s|ing|-suite| suite)?\b", re.I)
_NPM_PLACEHOLDER = 'echo "Error: no test specified" && exit 1'


@dataclass(frozen=True)
class TestCommand:
    __test__ = False  # not a pytest class

    command: str | None  # None: no way to run this repository's tests was found
    why: str  # where it came from, for the task's details and the PR body


def detect_test_command(root: Path, configured: str | None) -> TestCommand:
    if configured:
        return TestCommand(configured, "agent.test_command")
    repo_config = _repo_config(root).get("test_command")
    if isinstance(repo_config, str) and repo_config.strip():
        return TestCommand(repo_config.strip(), ".tamma/config.toml")
    for name in GUIDANCE_FILES:
        found = _from_markdown(read_text_beneath(root, name, 500_000) or "")
        if found:
            return TestCommand(found, f"the test command {name} gives")
    for found, where in (
        _node(root), _cargo(root), _go(root), _cmake(root), _make(root), _python(root), _from_ci(root),
    ):  # fmt: skip
        if found:
            return TestCommand(found, where)
    return TestCommand(None, "no test command found: no test script, Cargo.toml, go.mod, test target or Python tests")


def resolve_test_command(root: Path, configured: str | None) -> str | None:
    """The command alone (see `detect_test_command`)."""
    return detect_test_command(root, configured).command


def _repo_config(root: Path) -> dict[str, object]:
    try:
        return tomllib.loads(read_text_beneath(root, ".tamma/config.toml", 200_000) or "")
    except (tomllib.TOMLDecodeError, *TOO_DEEP):
        return {}


def _from_markdown(text: str) -> str | None:
    """The test command a guidance file gives in a fenced code block (a `$ ` prompt is
    dropped): a line that is a known test command, else the first command of a block that a
    sentence about tests introduces (the two lines before it)."""
    introduced: str | None = None
    for m in re.finditer(r"^```[\w+-]*\n(.*?)^```", text, re.M | re.S):
        lines = [raw.strip().removeprefix("$ ").strip() for raw in m.group(1).splitlines()]
        lines = [line for line in lines if line and not line.startswith("#")]
        for line in lines:
            if _TEST_LINE.match(line):
                return line
        before = "\n".join(text[: m.start()].rstrip().splitlines()[-2:])
        if (
            introduced is None
            and lines
            and _INTRODUCED.search(before)
            and not re.search(r"install|setup|set up", before, re.I)
        ):
            introduced = lines[0]
    return introduced


def _from_ci(root: Path) -> tuple[str | None, str]:
    """A `run:` step of a GitHub Actions or GitLab CI file that is a test command (one line)."""
    workflows = root / ".github" / "workflows"
    names = sorted(p.name for p in workflows.iterdir()) if workflows.is_dir() and not workflows.is_symlink() else []
    files = [f".github/workflows/{n}" for n in names if n.endswith((".yml", ".yaml"))] + [".gitlab-ci.yml"]
    for name in files:
        for line in (read_text_beneath(root, name, 500_000) or "").splitlines():
            m = re.match(r"^\s*(?:-\s*)?(?:run:\s*|-\s+)(.+)$", line)
            if m and _TEST_LINE.match(m.group(1).strip().strip("'\"")):
                return m.group(1).strip().strip("'\""), f"the test step of {name}"
    return None, ""


def node_manager(root: Path) -> str:
    """npm, pnpm, yarn or bun: `packageManager`, else the lockfile present."""
    try:
        declared = json.loads(read_text_beneath(root, "package.json", 2_000_000) or "{}").get("packageManager", "")
    except (json.JSONDecodeError, AttributeError, *TOO_DEEP):
        declared = ""
    if isinstance(declared, str) and declared.split("@")[0] in ("npm", "pnpm", "yarn", "bun"):
        return declared.split("@")[0]
    for lockfile, manager in (("pnpm-lock.yaml", "pnpm"), ("yarn.lock", "yarn"), ("bun.lockb", "bun")):
        if is_regular_beneath(root, lockfile):
            return manager
    return "npm"


def node_workspaces(manifest: object) -> list[str]:
    """The member patterns package.json declares (`workspaces`, a list or yarn's `{packages}`)."""
    declared = manifest.get("workspaces") if isinstance(manifest, dict) else None
    if isinstance(declared, dict):
        declared = declared.get("packages")
    return [p for p in declared if isinstance(p, str)] if isinstance(declared, list) else []


PNPM_RECURSIVE_TEST = (
    'COREPACK_HOME="$VIRTUAL_ENV/corepack" COREPACK_ENABLE_NETWORK=0 COREPACK_ENABLE_DOWNLOAD_PROMPT=0 '
    "corepack pnpm -r --no-bail --if-present --workspace-concurrency=1 test"
)


def _node(root: Path) -> tuple[str | None, str]:
    text = read_text_beneath(root, "package.json", 2_000_000)
    if text is None:
        return None, ""
    try:
        manifest = json.loads(text)
        scripts = manifest.get("scripts") or {}
    except (json.JSONDecodeError, AttributeError, *TOO_DEEP):
        return None, ""
    script = scripts.get("test") if isinstance(scripts, dict) else None
    if not isinstance(script, str) or not script.strip() or script.strip() == _NPM_PLACEHOLDER:
        if node_workspaces(manifest) and node_manager(root) in ("npm", "yarn"):
            # no test script at the root of a workspace: every member's own, each under its name
            return "npm test --workspaces --if-present", "the test scripts of the workspace's packages"
        if node_manager(root) == "pnpm" and is_regular_beneath(root, "pnpm-workspace.yaml"):
            # npm cannot read pnpm's workspace file: pnpm itself, from the environment's corepack
            # (setup fetched it; the run is offline), every member even after one fails
            return PNPM_RECURSIVE_TEST, "the test scripts of the pnpm workspace's packages"
        return None, ""
    # npm runs the script with node_modules/.bin on PATH whichever manager installed them
    return "npm test", f"package.json's test script ({node_manager(root)} project)"


def _cargo(root: Path) -> tuple[str | None, str]:
    return ("cargo test", "Cargo.toml") if is_regular_beneath(root, "Cargo.toml") else (None, "")


def _go(root: Path) -> tuple[str | None, str]:
    return ("go test -v ./...", "go.mod") if is_regular_beneath(root, "go.mod") else (None, "")


def _cmake(root: Path) -> tuple[str | None, str]:
    text = read_text_beneath(root, "CMakeLists.txt", 1_000_000) or ""
    if re.search(r"^\s*(enable_testing|add_test|include\s*\(\s*CTest)", text, re.M | re.I):
        command = "cmake -S . -B build && cmake --build build && ctest --test-dir build --output-on-failure"
        return command, "CMakeLists.txt declares tests (ctest)"
    return None, ""


def _make(root: Path) -> tuple[str | None, str]:
    for name in ("GNUmakefile", "Makefile", "makefile"):
        text = read_text_beneath(root, name, 1_000_000)
        if text is None:
            continue
        for target in ("test", "check"):
            if re.search(rf"^{target}\s*:(?!=)", text, re.M):
                return f"make {target}", f"the {target} target of {name}"
    return None, ""


# pytest named as a requirement ("pytest", "pytest>=7", 'pytest[testing]', pytest = "^8"), not
# a plugin ("pytest-cov") or a section name ("[tool.pytest.ini_options]")
_PYTEST_REQUIREMENT = re.compile(r"""(?:^|[\s"',\[])pytest(?![\w.-])\s*(?:[<>=!~\[;"',\]]|$)""", re.M)
_DECLARING = ("pyproject.toml", "setup.cfg", "setup.py", "tox.ini", "noxfile.py", "Pipfile")


def uses_pytest(root: Path) -> bool:
    """The repository runs its tests with pytest: a pytest config, a conftest, pytest declared
    as a requirement (a test extra, a dependency group, requirements-dev.txt ...), or tests that
    import pytest or are bare `def test_` functions, which only pytest collects (declared
    nowhere is common: the runner is then installed by setup)."""
    if any(is_regular_beneath(root, f) for f in ("pytest.ini", "conftest.py", "tests/conftest.py", "test/conftest.py")):
        return True
    for name in ("pyproject.toml", "setup.cfg", "tox.ini"):
        head = read_text_beneath(root, name, 200_000) or ""
        if "[tool.pytest" in head or "[pytest]" in head or "[tool:pytest]" in head:
            return True
    tests = python_tests(root)
    if not tests:
        return False  # declared but nothing to collect: no command is better than one that runs nothing
    requirements = [str(p.relative_to(root)) for p in _requirement_files(root)]
    if any(_PYTEST_REQUIREMENT.search(read_text_beneath(root, f, 200_000) or "") for f in (*_DECLARING, *requirements)):
        return True
    for f in tests:
        text = read_text_beneath(root, f, 200_000) or ""
        if re.search(r"^\s*(import pytest|from pytest )", text, re.M):
            return True
        if re.search(r"^def test", text, re.M) and not re.search(r"^\s*(import unittest|from unittest)", text, re.M):
            return True
    return False


def _requirement_files(root: Path) -> list[Path]:
    """requirements*.txt at the root and in requirements/ (regular files, no links)."""
    found: list[Path] = []
    for folder in (root, root / "requirements"):
        if folder.is_symlink() or not folder.is_dir():
            continue
        found += [p for p in sorted(folder.glob("*.txt")) if not p.is_symlink() and "req" in str(p.relative_to(root))]
    return found[:20]


def python_tests(root: Path, limit: int = 200) -> list[str]:
    """Python test files (test_*.py, *_test.py) outside hidden and vendored folders."""
    found: list[str] = []
    skip = {"node_modules", "venv", ".venv", "build", "dist", "site-packages", "__pycache__"}
    stack = [root]
    while stack and len(found) < limit:
        here = stack.pop()
        try:
            entries = sorted(here.iterdir())
        except OSError:
            continue
        for p in entries:
            if p.is_symlink() or p.name.startswith("."):
                continue
            if p.is_dir():
                if p.name not in skip:
                    stack.append(p)
            elif p.suffix == ".py" and (p.name.startswith("test_") or p.stem.endswith("_test")):
                found.append(str(p.relative_to(root)))
    return found


def submodule_paths(root: Path, limit: int = 10) -> list[str]:
    """The paths .gitmodules declares. Tamma never fetches submodules (their URLs and the code
    they bring are the repository's to choose: hostile input), so their folders are empty here."""
    text = read_text_beneath(root, ".gitmodules", 200_000) or ""
    found = re.findall(r"^\s*path\s*=\s*(\S[^\n]{0,200}?)\s*$", text, re.M)
    return list(dict.fromkeys(found))[:limit]


def lfs_patterns(root: Path, limit: int = 10) -> list[str]:
    """The patterns .gitattributes stores with Git LFS: Tamma's checkouts hold their pointer files
    (it runs no filter: a filter is a program the repository's config names)."""
    text = read_text_beneath(root, ".gitattributes", 200_000) or ""
    found = [line.split()[0] for line in text.splitlines() if "filter=lfs" in line.split()[1:]]
    return list(dict.fromkeys(found))[:limit]


def python_members(root: Path, limit: int = 20) -> list[str]:
    """A monorepo's Python packages: folders (up to three levels down, outside hidden and
    vendored ones) holding a pyproject.toml or setup.py, when the root holds neither. Empty for
    an ordinary repository."""
    if is_regular_beneath(root, "pyproject.toml") or is_regular_beneath(root, "setup.py"):
        return []
    skip = {"node_modules", "venv", ".venv", "build", "dist", "site-packages", "__pycache__", "tests", "test"}
    found: list[str] = []
    level = [root]
    for _ in range(3):
        below: list[Path] = []
        for here in level:
            try:
                entries = sorted(p for p in here.iterdir() if p.is_dir() and not p.is_symlink())
            except OSError:
                continue
            for p in entries:
                if p.name.startswith(".") or p.name in skip:
                    continue
                rel = str(p.relative_to(root))
                if is_regular_beneath(root, f"{rel}/pyproject.toml") or is_regular_beneath(root, f"{rel}/setup.py"):
                    found.append(rel)
                else:
                    below.append(p)
        level = below
    return found[:limit]


def _python(root: Path) -> tuple[str | None, str]:
    members = python_members(root)
    if members and python_tests(root):
        # each member's tests from the root, over the members installed by setup; importlib
        # mode, so two members' tests/test_util.py do not collide as one module
        why = f"pytest over the workspace's Python packages ({', '.join(members)})"
        return f"{PYTEST} --import-mode=importlib", why
    if uses_pytest(root):
        return PYTEST, "pytest (configured or imported by the tests)"
    if python_tests(root):
        return UNITTEST, "Python test files that do not use pytest (unittest discovery)"
    return None, ""


def read_guidance(root: Path, per_file: int = 12_000, total: int = 24_000) -> str:
    """The repository's guidance for agents and contributors (AGENTS.md, CLAUDE.md,
    .github/copilot-instructions.md, CONTRIBUTING.md), each cut to `per_file` characters, for
    the coding prompt; links and FIFOs are not read."""
    parts: list[str] = []
    for name in ("AGENTS.md", "CLAUDE.md", ".github/copilot-instructions.md", "CONTRIBUTING.md"):
        text = (read_text_beneath(root, name, per_file * 4) or "").strip()
        if text:
            cut = text[:per_file] + ("\n[... cut]" if len(text) > per_file else "")
            parts.append(f"--- {name} ---\n{cut}")
    return "\n\n".join(parts)[:total]


# An install command, as a guidance file gives one (never sudo or a system package manager: the
# sandbox has neither root nor the system's network).
_SETUP_LINE = re.compile(
    r"^(?:(?:python3?|uv|pipx?)\s+(?:-m\s+pip\s+)?install\b|pip3?\s+install\b|uv\s+(?:sync|pip\s+install)\b|"
    r"poetry\s+install\b|pdm\s+(?:install|sync)\b|npm\s+(?:ci|install)\b|pnpm\s+install\b|yarn(?:\s+install)?$|"
    r"cargo\s+(?:fetch|build)\b|go\s+mod\s+download\b|make\s+(?:deps|install-deps|setup|bootstrap)\b)"
)
_SETUP_INTRO = re.compile(r"\b(install|set ?up|setup|dependencies|bootstrap|development environment)\b", re.I)


def setup_from_guidance(root: Path) -> tuple[str | None, str]:
    """The install commands a guidance file gives (a code block that a sentence about setting up
    introduces, every line an install command), joined with &&; or None."""
    for name in GUIDANCE_FILES:
        text = read_text_beneath(root, name, 500_000) or ""
        for m in re.finditer(r"^```[\w+-]*\n(.*?)^```", text, re.M | re.S):
            lines = [raw.strip().removeprefix("$ ").strip() for raw in m.group(1).splitlines()]
            lines = [line for line in lines if line and not line.startswith("#")]
            before = "\n".join(text[: m.start()].rstrip().splitlines()[-2:])
            if lines and _SETUP_INTRO.search(before) and all(_SETUP_LINE.match(line) for line in lines):
                return " && ".join(lines), f"the setup {name} gives"
    return None, ""
