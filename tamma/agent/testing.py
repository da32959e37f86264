"""Which command runs a repository's tests, and which sets up its environment.

Both are shell command lines run by /bin/sh *inside* the sandbox, so what a person would type
(`make deps && pytest -q`) works, and nothing they contain runs outside the boundary.
"""

from __future__ import annotations

from pathlib import Path

from tamma.agent.safefs import read_text_beneath


def uses_pytest(root: Path) -> bool:
    if any((root / f).exists() for f in ("pytest.ini", "conftest.py", "tests/conftest.py")):
        return True
    for name in ("pyproject.toml", "setup.cfg", "tox.ini"):
        head = _head(root, name)
        if "[tool.pytest" in head or "[pytest]" in head or "[tool:pytest]" in head:
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


def _head(root: Path, name: str) -> str:
    """The start of a file the sandbox may have written: a link or a FIFO reads as empty."""
    return read_text_beneath(root, name, 200_000) or ""
