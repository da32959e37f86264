"""The resolve-rate suite (bench/agent_eval.py) guards its own mechanics in CI: with the scripted
model replaying each known fix, every task must be resolved (a miss is a broken mechanic:
detection, setup, the baseline, the tools or the gate)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_the_eval_suite_resolves_every_task_with_the_scripted_model() -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "agent_eval.py"), "--tasks", "c-make,agents-md,node-test,rust-crate", "--json"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    doc = json.loads(run.stdout)
    ran = [t for t in doc["tasks"] if t["resolved"] is not None]
    assert ran and all(t["resolved"] for t in ran), doc["tasks"]
    assert doc["totals"]["rate"] == 1.0 and doc["totals"]["turns"] == 4 * len(ran)
