"""The demo: a small repository with a failing test and an issue describing the bug."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tamma.models import Issue
from tamma.platforms.local import LocalPlatform, local_repo_ref

DEMO_TITLE = "Fix off-by-one in paginate()"
DEMO_BODY = (
    "`paginate(items, page, per_page)` takes 1-based page numbers, but page 1 returns the "
    "second page and the last page comes back empty. `python -m unittest` shows it."
)

_FILES = {
    "README.md": "# pager\n\nA tiny pagination helper.\n",
    "pager.py": (
        "def paginate(items, page, per_page):\n"
        '    """Return the items on 1-based page `page`, `per_page` at a time."""\n'
        "    start = page * per_page\n"
        "    return items[start:start + per_page]\n"
    ),
    "test_pager.py": (
        "import unittest\n\nfrom pager import paginate\n\n\n"
        "class PaginateTest(unittest.TestCase):\n"
        "    def test_first_page(self):\n"
        "        self.assertEqual(paginate(list(range(10)), 1, 3), [0, 1, 2])\n\n"
        "    def test_last_partial_page(self):\n"
        "        self.assertEqual(paginate(list(range(10)), 4, 3), [9])\n\n\n"
        'if __name__ == "__main__":\n    unittest.main()\n'
    ),
}


def make_sample_repo(path: Path) -> Path:
    """A git repository at `path` holding the buggy pager and its (failing) tests."""
    path.mkdir(parents=True, exist_ok=True)
    for name, text in _FILES.items():
        (path / name).write_text(text, encoding="utf-8")

    def run(*args: str) -> None:
        subprocess.run(["git", *args], cwd=path, check=True, capture_output=True)

    run("init", "--quiet", "--initial-branch=main")
    run("add", "--all")
    run("-c", "user.name=Demo", "-c", "user.email=demo@localhost", "commit", "--quiet", "-m", "Pager with tests")
    return path


def make_demo(path: Path, data_dir: Path) -> tuple[LocalPlatform, Issue]:
    platform = LocalPlatform(local_repo_ref(make_sample_repo(path)), data_dir)
    return platform, platform.create_issue(DEMO_TITLE, DEMO_BODY, author="demo")
