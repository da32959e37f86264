"""The patch registry (tamma/workflows/patches.py) and the workflow code agree: every id the code
passes to `workflow.patched` or `workflow.deprecate_patch` is registered at that stage, and every
registered id is still in the code (a stage-3 removal takes its entry out too)."""

from __future__ import annotations

import ast
import re
from datetime import date
from pathlib import Path

import tamma.workflows
from tamma.workflows.patches import PATCHES

WORKFLOWS = Path(tamma.workflows.__file__).parent


def calls_in_code(folder: Path = WORKFLOWS) -> dict[str, set[str]]:
    """patch id → the stages ('patched', 'deprecated') the workflow code uses it at."""
    found: dict[str, set[str]] = {}
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            stage = {"patched": "patched", "deprecate_patch": "deprecated"}.get(node.func.attr)
            if stage is None:
                continue
            arg = node.args[0] if node.args else None
            assert isinstance(arg, ast.Constant) and isinstance(arg.value, str), (
                f"{path.name}:{node.lineno}: a patch id must be a string literal, to be registered"
            )
            found.setdefault(arg.value, set()).add(stage)
    return found


def test_every_patch_in_the_code_is_registered_at_its_stage_and_no_other() -> None:
    code = calls_in_code()
    assert code, "the scan found no patch calls at all: it is not reading the workflows"
    assert set(code) == set(PATCHES), {
        "in the code, not registered": sorted(set(code) - set(PATCHES)),
        "registered, not in the code (a removed call takes its entry out)": sorted(set(PATCHES) - set(code)),
    }
    wrong = {
        pid: (sorted(stages), PATCHES[pid].stage) for pid, stages in code.items() if stages != {PATCHES[pid].stage}
    }
    assert wrong == {}, f"code stage vs registry stage: {wrong}"


def test_each_entry_says_when_it_went_in_and_when_it_may_move_on() -> None:
    for pid, patch in PATCHES.items():
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", pid), pid
        added, after = date.fromisoformat(patch.added), date.fromisoformat(patch.next_step_after)
        assert added < after, pid
        assert patch.why.strip(), pid


def test_the_scan_sees_both_kinds_of_call(tmp_path: Path) -> None:
    (tmp_path / "w.py").write_text('if workflow.patched("a-b"):\n    pass\nworkflow.deprecate_patch("c")\n')
    assert calls_in_code(tmp_path) == {"a-b": {"patched"}, "c": {"deprecated"}}
