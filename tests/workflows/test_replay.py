"""Golden histories: event histories of representative runs, recorded on earlier workflow code
(tests/conftest.py `keep_history`, RECORD_HISTORIES=1), replayed on the current code. A change to
`IssueWorkflow` or `PollWorkflow` that would break a run already in flight — a step added,
removed or reordered without `workflow.patched` — fails here before it reaches a server with live
workflows. All were re-recorded at the v0.1.0 baseline, when every patch until then was
deprecated (tamma/workflows/patches.py); they are never re-recorded to make a change pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from tamma.workflows.issue import IssueWorkflow
from tamma.workflows.poll import PollWorkflow
from tamma.workflows.session import SessionWorkflow
from tests.conftest import HISTORIES

#: the runs every workflow change must keep replaying; deleting one of them fails the suite
REQUIRED = {
    "merged",
    "rejected",
    "escalated",
    "tests-fail",
    "budget-exceeded",
    "blocked-path-approved",
    "self-review-round",
    "github-review-round",
    "ci-fix-round",
    "ci-wait-activity",  # CI polled inside one activity (patch ci-wait-activity)
    "failed-in-analyse",  # the progress comment says how it ended (patch progress-on-end)
    "merge-held-for-review",  # branch protection held the merge; a review webhook released it (signal)
    "approved-by-comment",  # `/tamma approve` (a signal, redelivered once)
    "stopped-on-issue-close",  # the issue closed while the plan waited (signal)
    "replanned-after-edit",  # the issue edited while the plan waited: planned again, then approved
    "parked-then-resumed",  # a sustained rate limit parked the task; `resume` (an update) finished it
    "poll",  # PollWorkflow: a schedule's poll that started the labelled issue's task
    "ci-nudges-bounded",  # 60 CI webhooks during one wait: 20 restarts, then the activity's polls (patch)
    "merge-window-objection",  # workflow.merge_delay_s: a review in the window left the PR open (patch merge-delay)
    "merged-details-memo",  # the final details kept in the memo (patch details-memo)
    "session-reuse-revoked",  # SessionWorkflow: two rotations, then a spent refresh token revoked it
    "session-signed-out-memo",  # sign-out carries the revocation in the memo (patch session-revoked-memo)
}

WORKFLOWS = [IssueWorkflow, PollWorkflow, SessionWorkflow]


def golden() -> list[Path]:
    return sorted(HISTORIES.glob("*.json"))


def test_every_representative_run_has_a_golden_history() -> None:
    assert {p.stem for p in golden()} >= REQUIRED


@pytest.mark.parametrize("path", golden(), ids=lambda p: p.stem)
async def test_golden_history_replays_on_the_current_code(path: Path) -> None:
    history = WorkflowHistory.from_json(f"golden-{path.stem}", path.read_text())
    assert history.events, "an empty history replays trivially and proves nothing"
    replayer = Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.stem}: {result.replay_failure}"


async def test_a_history_that_diverges_from_the_code_is_caught() -> None:
    """The replay check can fail: drop the first activity the merged run scheduled and the
    workflow code no longer matches its history."""
    doc = json.loads((HISTORIES / "merged.json").read_text())
    events = doc["events"]
    first = next(i for i, e in enumerate(events) if e.get("eventType") == "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED")
    attrs = events[first]["activityTaskScheduledEventAttributes"]
    attrs["activityType"]["name"] = "no_such_activity"
    history = WorkflowHistory.from_json("golden-tampered", json.dumps(doc))
    replayer = Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is not None
