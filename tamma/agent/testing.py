"""Which command runs a repository's tests, and which sets up its environment.

Both are shell command lines run by /bin/sh *inside* the sandbox, so what a person would type
(`make deps && pytest -q`) works, and nothing they contain runs outside the boundary.
"""

from __future__ import annotations

from pathlib import Path


def uses_pytest(root: Path) -> bool:
    if any((root / f).exists() for f in ("pytest.ini", "conftest.py", "tests/conftest.py")):
        return True
    for name in ("pyproject.toml", "setup.cfg", "tox.ini"):
        f = root / name
        if f.is_file() and ("[tool.pytest" in _head(f) or "[pytest]" in _head(f) or "[tool:pytest]" in _head(f)):
            return True
    return False


def resolve_test_command(root: Path, configured: str | None) -> str:
    """The configured command, else pytest when the repo uses it, else unittest discovery.
    `python` is the repository's environment when setup made one, else the system's python3."""
    if configured:
        return configured
    if uses_pytest(root):
        return "python3 -m pytest -q -p no:cacheprovider"
    return "python3 -m unittest discover -v"


def _head(f: Path) -> str:
    try:
        with f.open(encoding="utf-8", errors="replace") as fh:
            return fh.read(200_000)
    except OSError:
        return ""
