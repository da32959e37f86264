"""The implement activity is idempotent: a retry after a push reuses the pushed commit."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from tamma.activities import IssueActivities
from tamma.config import Settings
from tamma.models import ImplementInput, Issue, Plan, PlanStep, TestInput
from tamma.platforms.local import LocalPlatform
from tamma.providers.scripted import DEMO_TRANSCRIPT
from tamma.runtime.wiring import build_activities


async def test_implement_twice_pushes_once(activities: IssueActivities, demo: tuple[LocalPlatform, Issue]) -> None:
    platform, issue = demo
    await platform.ensure_branch("tamma/issue-1", "main")
    plan = Plan(summary="fix", steps=[PlanStep(title="fix")], files=["pager.py"], estimate_hours=0.1)
    inp = ImplementInput(
        repo=platform.repo, issue=issue, plan=plan, branch="tamma/issue-1", iteration=1, transcript=str(DEMO_TRANSCRIPT)
    )
    env = ActivityEnvironment()
    first = await env.run(activities.implement, inp)
    second = await env.run(activities.implement, inp)  # as if the first worker died after pushing
    assert not first.reused and second.reused
    assert first.commit == second.commit
    log = subprocess.run(
        ["git", "-C", str(platform.path), "log", "--format=%s", "main..tamma/issue-1"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert log == ["Fix off-by-one in paginate() (#1)"]
    report = await env.run(
        activities.run_tests, TestInput(repo=platform.repo, branch="tamma/issue-1", commit=first.commit)
    )
    assert report.passed and "Ran 2 tests" in report.output_tail


async def test_an_interrupted_attempt_resumes_from_its_checkpoint(
    settings: Settings, demo: tuple[LocalPlatform, Issue]
) -> None:
    """The first attempt fixes pager.py, then its model stops answering (a 400 no retry fixes:
    the step fails). Its heartbeat carried a checkpoint; the next attempt — another worker, a
    fresh clone — finds the fix restored, is told where it stands, and only has to finish: the
    model is not paid to redo the edit."""
    from tamma.config import LLMSettings
    from tests.standins import anthropic_api as api
    from tests.standins.http import serve

    platform, issue = demo
    await platform.ensure_branch("tamma/issue-1", "main")
    plan = Plan(summary="fix", steps=[PlanStep(title="fix")], files=["pager.py"], estimate_hours=0.1)
    inp = ImplementInput(repo=platform.repo, issue=issue, plan=plan, branch="tamma/issue-1", iteration=1)
    fix = {"path": "pager.py", "old_text": "start = page * per_page", "new_text": "start = (page - 1) * per_page"}
    replies = [
        api.message([api.tool_use("edit_file", fix, "e1")], "tool_use"),
        api.error(400, "invalid_request_error", "messages: malformed"),  # the first attempt ends here
        api.message([api.text("Fixed the offset; the edit was already in place.")], "end_turn"),
    ]
    with serve(api.scripted(replies, api_key="sk-ant-cp")) as model:
        llm = LLMSettings(provider="anthropic", anthropic_api_key="sk-ant-cp", anthropic_base_url=model.url)
        acts = build_activities(settings.model_copy(update={"llm": llm}))
        first = ActivityEnvironment()
        beats: list[Any] = []
        first.on_heartbeat = lambda *details: beats.append(details)
        with pytest.raises(ApplicationError, match="malformed"):
            await first.run(acts.implement, inp)
        checkpoint = beats[-1][0]["checkpoint"]
        assert checkpoint["turns"] == 1 and "(page - 1)" in checkpoint["files"]["pager.py"]
        second = ActivityEnvironment()
        second.info = dataclasses.replace(second.info, heartbeat_details=list(beats[-1]))
        result = await second.run(acts.implement, inp)
        resumed = json.dumps(model.requests[2].json["messages"][0])
    assert "interrupted after 1 turn" in resumed and "pager.py" in resumed
    assert len(model.requests) == 3  # one turn in the second attempt: the edit was not made again
    shown = subprocess.run(
        ["git", "-C", str(platform.path), "show", f"{result.commit}:pager.py"], capture_output=True, text=True
    ).stdout
    assert "start = (page - 1) * per_page" in shown and result.changed_files == ["pager.py"]


async def test_a_checkpoint_never_keeps_a_secret_or_follows_a_link(tmp_path: Path) -> None:
    from tamma.agent.checkpoint import take

    (tmp_path / "ok.py").write_text("x = 1\n")
    (tmp_path / "leak.py").write_text("TOKEN = 'ghp_secret'\n")
    (tmp_path / "link.py").symlink_to("/etc/hostname")
    cp = take(
        tmp_path, {"ok.py", "leak.py", "link.py", "gone.py"}, 1, 2, "note", lambda t: t.replace("ghp_secret", "***")
    )
    assert cp.files == {"ok.py": "x = 1\n", "gone.py": None}
    assert sorted(cp.skipped) == ["leak.py", "link.py"]


async def test_a_checkpoint_restores_nothing_outside_the_workspace_or_into_git(
    demo: tuple[LocalPlatform, Issue], tmp_path: Path
) -> None:
    """A checkpoint comes back through Temporal from an earlier attempt: treated as hostile. A path
    that leaves the workspace, enters .git, or goes through a link the sandbox left is refused."""
    from tamma.agent.checkpoint import Checkpoint, restore
    from tamma.agent.workspace import Workspace
    from tamma.errors import InvalidInputError

    platform, _ = demo
    ws = await Workspace.clone(str(platform.path), "main", tmp_path / "work")
    outside = tmp_path / "outside"
    outside.mkdir()
    (ws.root / "escape").symlink_to(outside)  # as sandboxed code could leave one
    for path in ("../planted.py", ".git/hooks/post-checkout", "escape/planted.py", "/etc/planted"):
        with pytest.raises(InvalidInputError):
            restore(Checkpoint(iteration=1, turns=1, files={path: "x = 1\n"}), ws.resolve)
    assert not (tmp_path / "planted.py").exists() and not list(outside.iterdir())
    assert not (ws.root / ".git" / "hooks" / "post-checkout").exists()
    assert restore(Checkpoint(iteration=1, turns=1, files={"pkg/new.py": "y = 2\n"}), ws.resolve) == ["pkg/new.py"]
    assert (ws.root / "pkg" / "new.py").read_text() == "y = 2\n"
