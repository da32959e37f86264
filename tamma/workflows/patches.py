"""Every patch id the workflows have ever used, with where it is in its life and when it may move
on. A test (tests/workflows/test_patches.py) holds this registry and the code to each other: an id
in the code that is not here, or here as `patched` but called with `deprecate_patch` (or the
reverse), fails the suite.

The three stages, as Temporal's patching API has them:

1. `patched(id)`: the new path when True, the old path exactly as it was otherwise. New runs
   record a marker; runs older than the change replay the old path.
2. `deprecate_patch(id)`: only the new path is left. Deployed once no run that started before the
   patch can still be open (every open run has the marker). Runs with the marker replay; a run
   without it would not — which is why the golden histories are re-recorded at this stage.
3. The call removed. Once no run that recorded the marker can still be open.

v0.1.0 baseline (2026-12-06, before any release): every patch until then moved to stage 2, the
old paths went, and every golden history was re-recorded on the new code. A run lives at most
as long as its longest wait — approval (`workflow.approval_timeout_s`, a day), CI (six hours),
a merge the forge holds (`workflow.merge_wait_s`, a week) — except a *parked* task, which waits
for a person: before moving a patch to stage 3, check that no run older than its `removable_after`
date is open (`tamma list --status parked`, `--status running`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Patch:
    stage: Literal["patched", "deprecated"]
    added: str  # the date the patch went in (YYYY-MM-DD)
    why: str
    #: patched: the date from which it may be deprecated (all older runs closed); deprecated: the
    #: date from which the call may be removed (all runs with its marker closed)
    next_step_after: str


PATCHES: dict[str, Patch] = {
    "reply-to-reviews": Patch("deprecated", "2026-11-22", "reply to the review threads a fix answers", "2027-01-31"),
    "blocked-paths-on-diff": Patch(
        "deprecated", "2026-11-22", "the blocked-path gate checks the real diff, before the PR and the merge",
        "2027-01-31",
    ),
    "merge-pins-ci-sha": Patch("deprecated", "2026-11-22", "merge only the commit CI passed on", "2027-01-31"),
    "ci-fix-loop": Patch("deprecated", "2026-11-22", "a red CI is handed to the agent to fix", "2027-01-31"),
    "park-on-rate-limit": Patch(
        "deprecated", "2026-11-22", "model rate limits waited out on timers, then the task parks", "2027-01-31"
    ),
    "unsuccessful-task-fails-execution": Patch(
        "deprecated", "2026-11-22", "a task that did not merge ends as a failed execution", "2027-01-31"
    ),
    "ci-wait-activity": Patch("deprecated", "2026-12-06", "CI polled inside one heartbeating activity", "2027-01-31"),
    "progress-on-end": Patch(
        "deprecated", "2026-12-06", "the progress comment says how the task ended", "2027-01-31"
    ),
    "ci-nudge-budget": Patch(
        "patched", "2026-12-06", "a CI wait restarts on at most 20 webhook nudges (a bounded history)", "2027-01-31"
    ),
    "details-memo": Patch(
        "patched", "2026-12-06", "the final details kept in the run's memo (the Web UI shows it without a worker)",
        "2027-01-31",
    ),
    "merge-delay": Patch(
        "patched", "2026-12-06", "an optional window before the merge in which a reviewer can object", "2027-01-31"
    ),
    # a session lives at most api.session_max_s (30 days by default) plus an hour
    "session-revoked-memo": Patch(
        "patched", "2026-12-06", "a revoked session says so in its memo (the API refuses its access tokens)",
        "2027-01-06",
    ),
}  # fmt: skip
