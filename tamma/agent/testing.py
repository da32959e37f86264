"""Which command runs a repository's tests."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path


def resolve_test_command(root: Path, configured: str | None) -> list[str]:
    """The configured command, else pytest when the repo uses it, else unittest discovery."""
    if configured:
        return shlex.split(configured)
    uses_pytest = any((root / f).exists() for f in ("pytest.ini", "conftest.py")) or (
        (root / "pyproject.toml").exists()
        and "[tool.pytest" in (root / "pyproject.toml").read_text(encoding="utf-8", errors="replace")
    )
    if uses_pytest:
        return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    return [sys.executable, "-m", "unittest", "discover", "-v"]
