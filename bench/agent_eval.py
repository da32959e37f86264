"""How often the coding agent resolves an issue: a suite of small real repositories, each with a
bug, an issue describing it, and the repository's own tests as the judge.

    python bench/agent_eval.py                         # scripted model: guards the mechanics (CI)
    python bench/agent_eval.py --model configured      # the model your settings name (a real key)
    python bench/agent_eval.py --tasks c-make,go-module --json

Per task: a fresh copy of the repository (tests/fixtures/repos, cases.json), its test command and
environment detected and set up as a task's would be, the base commit's run (the bug must show
there), then the coding agent with the issue and Tamma's tools, then the tests again. Resolved =
the gate passes (tests ran, nothing that passed before fails, a failing test now passes). Printed:
resolved or not and why, turns, tokens, cost, seconds; then the totals and the resolve rate.

With `--model scripted` each task replays the known fix (read, edit, run the tests): a resolve
rate under 100 % there is a broken mechanic, not a weak model. With a real model it is a
measurement of that model on these tasks; add your own repositories to cases.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent.parent))

from tamma.activities.issue import _TestRunner
from tamma.agent import prompts
from tamma.agent.loop import run_agent
from tamma.agent.results import judge, parse_results
from tamma.agent.tools import Toolbox
from tamma.agent.workspace import Workspace
from tamma.config import Settings, load_settings
from tamma.errors import TammaError
from tamma.models import Issue, Plan, PlanStep
from tamma.platforms.local import local_repo_ref
from tamma.providers.base import LLMProvider
from tamma.providers.scripted import ScriptedProvider
from tamma.runtime.wiring import build_activities, make_provider

REPOS = Path(__file__).parent.parent / "tests" / "fixtures" / "repos"


def cases() -> dict[str, dict[str, Any]]:
    loaded: dict[str, dict[str, Any]] = json.loads((REPOS / "cases.json").read_text())
    return loaded


def available(case: dict[str, Any]) -> str:
    missing = [t for t in case["needs"] if shutil.which(t) is None and not (Path.home() / ".cargo/bin" / t).exists()]
    return f"{', '.join(missing)} not installed" if missing else ""


def scripted(case: dict[str, Any], folder: Path) -> LLMProvider:
    """The known fix as a recording: read the file, edit it, run the tests, finish."""
    calls = [
        ("read_file", {"path": case["path"]}),
        ("edit_file", {"path": case["path"], "old_text": case["old"], "new_text": case["new"]}),
        ("run_tests", {}),
    ]
    exchanges: list[dict[str, Any]] = [
        {
            "purpose": "code",
            "session": 1,
            "response": {"stop_reason": "tool_use", "tool_calls": [{"id": f"c{i}", "name": n, "input": a}]},
        }
        for i, (n, a) in enumerate(calls)
    ]
    exchanges.append({"purpose": "code", "session": 1, "response": {"text": "Fixed it.", "stop_reason": "end_turn"}})
    path = folder / "transcript.json"
    path.write_text(json.dumps({"format": "tamma-transcript/1", "exchanges": exchanges}))
    return ScriptedProvider(path)


async def one(name: str, case: dict[str, Any], model: str, settings: Settings, tmp: Path) -> dict[str, Any]:
    started = time.monotonic()
    repo = tmp / name / "repo"
    shutil.copytree(REPOS / name, repo)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base"]):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    acts = build_activities(settings)
    ws = await Workspace.clone(str(repo), "main", tmp / name / "work")
    row: dict[str, Any] = {"task": name, "resolved": False, "why": "", "turns": 0, "tokens": 0, "cost_usd": 0.0}
    try:
        runner = _TestRunner(acts, local_repo_ref(repo), ws, "main")
        prepared = await runner.prepared()
        if not prepared.baseline.counts.failed_ids:
            row["why"] = f"the bug does not show on the base commit ({prepared.baseline.summary})"
            return row
        provider = scripted(case, tmp / name) if model == "scripted" else make_provider(settings, "code", None, 1)
        issue = Issue(number=1, title=case["title"], body="Found in production; the tests show it.")
        plan = Plan(summary="Resolve the issue.", steps=[PlanStep(title="Find and fix the bug", detail="")], estimate_hours=0.5)
        toolbox = Toolbox(ws, runner, acts.redactor, run_command=runner.run_command)
        task = prompts.code_prompt(issue, plan, "", prepared.baseline.for_prompt(), prepared.guidance)
        outcome = await run_agent(provider, toolbox, prompts.CODE_SYSTEM, task, settings.agent.max_turns, lambda t, w: None)
        row.update(turns=outcome.turns, tokens=provider.usage.tokens, cost_usd=round(provider.usage.cost_usd, 4))
        result = await runner.run_once()
        touched = any("test" in f for f in await ws.changed_files())
        verdict = judge(parse_results(result.output), result.exit_code, prepared.baseline.counts, touched)
        row["resolved"] = verdict.passed and bool(verdict.fixed)
        row["why"] = verdict.summary[:160]
    except TammaError as exc:
        row["why"] = f"{type(exc).__name__}: {exc.message[:160]}"
    finally:
        ws.remove()
        row["seconds"] = round(time.monotonic() - started, 1)
    return row


async def main(names: list[str], model: str, as_json: bool) -> int:
    settings = load_settings() if model == "configured" else Settings()
    all_cases = cases()
    rows = []
    with tempfile.TemporaryDirectory(prefix="tamma-eval-") as tmp:
        settings = settings.model_copy(update={"data_dir": Path(tmp) / "data"})
        for name in names:
            why = available(all_cases[name])
            if why:
                rows.append({"task": name, "resolved": None, "why": f"skipped: {why}"})
                continue
            rows.append(await one(name, all_cases[name], model, settings, Path(tmp)))
    ran = [r for r in rows if r["resolved"] is not None]
    resolved = sum(1 for r in ran if r["resolved"])
    totals = {
        "model": model, "tasks": len(ran), "resolved": resolved, "rate": round(resolved / len(ran), 3) if ran else 0,
        "turns": sum(r["turns"] for r in ran), "tokens": sum(r["tokens"] for r in ran),
        "cost_usd": round(sum(r["cost_usd"] for r in ran), 4), "seconds": round(sum(r["seconds"] for r in ran), 1),
    }  # fmt: skip
    if as_json:
        print(json.dumps({"tasks": rows, "totals": totals}, indent=2))
    else:
        print(f"{'task':<16}{'resolved':>9}{'turns':>7}{'tokens':>9}{'cost $':>9}{'s':>7}  why")
        for r in rows:
            mark = "skipped" if r["resolved"] is None else ("yes" if r["resolved"] else "NO")
            if r["resolved"] is None:
                print(f"{r['task']:<16}{mark:>9}  {r['why']}")
                continue
            print(f"{r['task']:<16}{mark:>9}{r['turns']:>7}{r['tokens']:>9}{r['cost_usd']:>9.4f}{r['seconds']:>7.1f}  {r['why']}")
        print(
            f"\n{model}: {resolved}/{len(ran)} resolved ({totals['rate']:.0%}), {totals['turns']} turns, "
            f"{totals['tokens']} tokens, ${totals['cost_usd']:.4f}, {totals['seconds']:.0f} s"
        )
    return 0 if model != "scripted" or resolved == len(ran) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["scripted", "configured"], default="scripted")
    parser.add_argument("--tasks", default=",".join(cases()), help="comma-separated names from cases.json")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.tasks.split(","), args.model, args.json)))
