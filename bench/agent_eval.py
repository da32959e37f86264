"""How often the coding agent resolves an issue: a suite of small real repositories, each with a
bug, an issue describing it, and tests as the judge.

    python bench/agent_eval.py                         # scripted model: guards the mechanics (CI)
    python bench/agent_eval.py --model configured      # the model your settings name (a real key)
    python bench/agent_eval.py --tasks c-make,go-module --json
    python bench/agent_eval.py --model configured --task-file my-tasks.json
    python bench/agent_eval.py --model configured --from-commit ~/src/app:3f2a9c1 --title "..."

The tasks: one per repository of tests/fixtures/repos/cases.json (the bug its own tests catch),
and the tasks of tests/fixtures/repos/eval-tasks.json, which need more than reading the file the
issue names: the bug in a file the issue does not name, a fix across two packages, a bug no test
catches that must be reproduced first. A task may plant its bug into a repository, and may hold a
*hidden* test, added only after the agent has finished, as SWE-bench does: the agent never sees it.

Per task: a fresh copy of the repository, its test command and environment detected and set up
as a task's would be, the base commit's run (the bug must show there, in the repository's tests or
in the hidden ones), then the coding agent with the issue and Tamma's tools, then the tests again
(with the hidden tests). Resolved = the gate passes (tests ran, nothing that passed before fails,
a failing test now passes) and every hidden test that failed on the base passes. Printed: resolved
or not and why, turns, tokens, cost, seconds; then the totals and the resolve rate.

With `--model scripted` each task replays its known trajectory (explore, reproduce, edit, run the
tests), each step checking that the tools saw what they should: a resolve rate under 100 % there
is a broken mechanic, not a weak model. With a real model it is a measurement of that model.

Your own tasks: a JSON file of tasks in the shape of eval-tasks.json (`--task-file`), or a fix
from your repository's history (`--from-commit PATH:SHA`): the agent starts from the commit
before it with the commit's subject (or `--title`) as the issue, the test files the commit
changed are the hidden tests, and the scripted model writes the commit's other files.
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

from pydantic import BaseModel, ConfigDict, Field, ValidationError

sys.path.insert(0, str(Path(__file__).parent.parent))

from tamma.activities.issue import _TestRunner
from tamma.agent import prompts
from tamma.agent.loop import run_agent
from tamma.agent.results import TestCounts, judge, parse_results
from tamma.agent.safefs import UnsafePath, read_beneath, remove_beneath, write_file
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
GIT = ["-c", "user.name=eval", "-c", "user.email=eval@localhost", "-c", "commit.gpgsign=false"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Edit(_Strict):
    path: str
    old: str
    new: str


class Step(_Strict):
    """One tool call of the scripted trajectory and what its result must mention."""

    tool: str
    args: dict[str, Any] = Field(default_factory=dict)
    expect: list[str] = Field(default_factory=list)


class Hidden(_Strict):
    path: str
    content: str


class EvalTask(_Strict):
    repo: str = Field(description="a folder of tests/fixtures/repos, or a path to a git repository")
    base: str | None = Field(default=None, description="for a git repository: the commit to start from")
    title: str
    body: str = "Found in production; the tests show it."
    plant: list[Edit] = Field(default_factory=list, description="edits made before the base commit (the bug)")
    steps: list[Step] = Field(description="the scripted model's tool calls, before a final run_tests")
    hidden: list[Hidden] = Field(default_factory=list, description="tests added only after the agent finished")
    needs: list[str] = Field(default_factory=list, description="programs the task needs on this machine")
    setup_secrets: dict[str, str] = Field(default_factory=dict, description="setup variables this machine needs")


def _from_case(name: str, case: dict[str, Any]) -> dict[str, Any]:
    """A cases.json entry (shared with tests/workflows/test_real_repos.py) as an eval task."""
    return {
        "repo": case.get("fixture") or name,
        "plant": case.get("plant", []),
        "title": case["title"],
        "needs": case["needs"],
        "setup_secrets": case.get("setup_secrets", {}),
        "steps": [
            {"tool": "read_file", "args": {"path": case["path"]}, "expect": [case["old"].strip()]},
            {"tool": "edit_file", "args": {"path": case["path"], "old_text": case["old"], "new_text": case["new"]}},
        ],
    }


def load_tasks(extra: list[Path]) -> dict[str, EvalTask]:
    raw: dict[str, dict[str, Any]] = {
        name: _from_case(name, case)
        for name, case in json.loads((REPOS / "cases.json").read_text()).items()
    }
    for path in [REPOS / "eval-tasks.json", *extra]:
        try:
            loaded = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SystemExit(f"cannot read the tasks in {path}: {exc}") from None
        for name, task in loaded.items():
            if name in raw:
                raise SystemExit(f"{path}: task {name!r} is defined twice; rename one")
            raw[name] = task
    tasks: dict[str, EvalTask] = {}
    for name, task in raw.items():
        try:
            tasks[name] = EvalTask.model_validate(task)
        except ValidationError as exc:
            raise SystemExit(f"task {name!r} is not valid: {exc}") from None
    return tasks


def from_commit(spec: str, title: str | None) -> tuple[str, EvalTask]:
    """A task from a fix in a repository's history (PATH:SHA): start from its parent, its test
    files hidden, its other files the scripted fix."""
    path, _, sha = spec.rpartition(":")
    repo = Path(path).expanduser().resolve()

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"--from-commit {spec}: git {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    if not path or not sha:
        raise SystemExit(f"--from-commit takes PATH:SHA (a git repository and a commit), not {spec!r}")
    full = git("rev-parse", "--verify", f"{sha}^{{commit}}").strip()
    changed = [line.split("\t") for line in git("diff", "--name-status", "--no-renames", f"{full}^", full).splitlines()]
    hidden, steps = [], []
    for status, name in changed:
        if status == "D":
            continue
        content = git("show", f"{full}:{name}")
        if "test" in name.lower():
            hidden.append(Hidden(path=name, content=content))
        else:
            steps.append(Step(tool="write_file", args={"path": name, "content": content}))
    if not hidden:
        raise SystemExit(f"--from-commit {spec}: the commit changes no test file, so nothing could judge the fix")
    subject = git("log", "-1", "--format=%s", full).strip()
    task = EvalTask(repo=str(repo), base=f"{full}^", title=title or subject, body="", steps=steps, hidden=hidden)
    return f"{repo.name}@{full[:8]}", task


def available(task: EvalTask) -> str:
    missing = [t for t in task.needs if shutil.which(t) is None and not (Path.home() / ".cargo/bin" / t).exists()]
    return f"{', '.join(missing)} not installed" if missing else ""


def scripted(task: EvalTask, folder: Path) -> LLMProvider:
    """The task's known trajectory as a recording; each turn checks what the previous tools saw."""
    steps = [*task.steps, Step(tool="run_tests")]
    exchanges: list[dict[str, Any]] = []
    for i, step in enumerate(steps):
        exchange: dict[str, Any] = {
            "purpose": "code",
            "session": 1,
            "response": {
                "stop_reason": "tool_use",
                "tool_calls": [{"id": f"c{i}", "name": step.tool, "input": step.args}],
            },
        }
        if i > 0:
            exchange["expect"] = {"result_contains": steps[i - 1].expect}
        exchanges.append(exchange)
    exchanges.append({"purpose": "code", "session": 1, "response": {"text": "Fixed it.", "stop_reason": "end_turn"}})
    path = folder / "transcript.json"
    path.write_text(json.dumps({"format": "tamma-transcript/1", "exchanges": exchanges}))
    return ScriptedProvider(path)


def make_repo(task: EvalTask, dest: Path) -> Path:
    fixture = REPOS / task.repo
    if task.base is None and fixture.is_dir() and fixture.resolve().parent == REPOS.resolve():
        shutil.copytree(fixture, dest)
        subprocess.run(["git", "init", "-q", "-b", "main", str(dest)], check=True, capture_output=True)
    else:
        subprocess.run(["git", "clone", "-q", "--no-hardlinks", task.repo, str(dest)], check=True, capture_output=True)
        subprocess.run(["git", "-C", str(dest), "checkout", "-q", "-B", "main", task.base or "HEAD"], check=True)
    for edit in task.plant:
        target = dest / edit.path
        text = target.read_text()
        if text.count(edit.old) != 1:
            raise SystemExit(f"plant: {edit.path} holds {edit.old!r} {text.count(edit.old)} times, not once")
        target.write_text(text.replace(edit.old, edit.new))
    if task.plant or task.base is None:
        subprocess.run(["git", "-C", str(dest), "add", "-A"], check=True, capture_output=True)
        subprocess.run(["git", "-C", str(dest), *GIT, "commit", "-qm", "base"], check=True, capture_output=True)
    return dest


async def _run_with_hidden(runner: _TestRunner, ws: Workspace, hidden: list[Hidden]) -> tuple[TestCounts, int]:
    """The test command with the hidden tests in place (the agent's own files of those names are
    replaced: the hidden tests are the judge), then the workspace as it was."""
    kept: dict[str, bytes | None] = {}
    for h in hidden:
        # the agent's code ran with the workspace writable: a link where a hidden test goes (or on
        # the way to it) is removed, never written through
        folder = (ws.root / h.path).parent
        if not folder.resolve().is_relative_to(ws.root.resolve()):
            raise TammaError(f"the hidden test {h.path} would be written outside the workspace (a link on the way)")
        try:
            kept[h.path] = read_beneath(ws.root, h.path, 10_000_000)
        except UnsafePath:
            kept[h.path] = None
        remove_beneath(ws.root, h.path)
        folder.mkdir(parents=True, exist_ok=True)
        write_file(ws.root / h.path, h.content.encode(), exclusive=True)
    try:
        result = await runner.run_once()
    finally:
        for path, data in kept.items():
            remove_beneath(ws.root, path)
            if data is not None:
                write_file(ws.root / path, data, exclusive=True)
    return parse_results(result.output), result.exit_code


async def one(name: str, task: EvalTask, model: str, settings: Settings, tmp: Path) -> dict[str, Any]:
    started = time.monotonic()
    if task.setup_secrets:
        data = settings.model_dump()
        data["agent"]["setup_secrets"] = task.setup_secrets
        settings = Settings.model_validate(data)
    repo = make_repo(task, tmp / name / "repo")
    acts = build_activities(settings)
    ws = await Workspace.clone(str(repo), "main", tmp / name / "work")
    row: dict[str, Any] = {"task": name, "resolved": False, "why": "", "turns": 0, "tokens": 0, "cost_usd": 0.0}
    try:
        runner = _TestRunner(acts, local_repo_ref(repo), ws, "main")
        prepared = await runner.prepared()
        baseline, baseline_exit = prepared.baseline.counts, prepared.baseline.exit_code
        hidden_ids: set[str] = set()
        if task.hidden:
            baseline, baseline_exit = await _run_with_hidden(runner, ws, task.hidden)
            hidden_ids = set(baseline.failed_ids) - set(prepared.baseline.counts.failed_ids)
            if not hidden_ids:
                row["why"] = f"the hidden tests do not fail on the base commit ({baseline.describe()})"
                return row
        elif not baseline.failed_ids:
            row["why"] = f"the bug does not show on the base commit ({prepared.baseline.summary})"
            return row
        provider = scripted(task, tmp / name) if model == "scripted" else make_provider(settings, "code", None, 1)
        issue = Issue(number=1, title=task.title, body=task.body)
        plan = Plan(
            summary="Resolve the issue.", steps=[PlanStep(title="Find and fix the bug", detail="")], estimate_hours=0.5
        )
        toolbox = Toolbox(ws, runner, acts.redactor, run_command=runner.run_command)
        prompt = prompts.code_prompt(issue, plan, "", prepared.baseline.for_prompt(), prepared.guidance)
        outcome = await run_agent(
            provider, toolbox, prompts.CODE_SYSTEM, prompt, settings.agent.max_turns, lambda t, w: None
        )
        row.update(turns=outcome.turns, tokens=provider.usage.tokens, cost_usd=round(provider.usage.cost_usd, 4))
        if task.hidden:
            after, exit_code = await _run_with_hidden(runner, ws, task.hidden)
        else:
            result = await runner.run_once()
            after, exit_code = parse_results(result.output), result.exit_code
        touched = any("test" in f for f in await ws.changed_files())
        verdict = judge(after, exit_code, baseline, touched or bool(task.hidden), baseline_exit)
        still = sorted(hidden_ids & set(after.failed_ids))
        row["resolved"] = verdict.passed and bool(verdict.fixed) and not still
        row["why"] = (f"hidden tests still fail: {', '.join(still)[:120]}; " if still else "") + verdict.summary[:160]
    except TammaError as exc:
        row["why"] = f"{type(exc).__name__}: {exc.message[:160]}"
    finally:
        ws.remove()
        row["seconds"] = round(time.monotonic() - started, 1)
    return row


async def main(tasks: dict[str, EvalTask], names: list[str], model: str, as_json: bool) -> int:
    settings = load_settings() if model == "configured" else Settings()
    rows = []
    with tempfile.TemporaryDirectory(prefix="tamma-eval-") as tmp:
        settings = settings.model_copy(update={"data_dir": Path(tmp) / "data"})
        for name in names:
            why = available(tasks[name])
            if why:
                rows.append({"task": name, "resolved": None, "why": f"skipped: {why}"})
                continue
            rows.append(await one(name, tasks[name], model, settings, Path(tmp)))
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
        width = max([len(r["task"]) for r in rows] + [4]) + 2
        print(f"{'task':<{width}}{'resolved':>9}{'turns':>7}{'tokens':>9}{'cost $':>9}{'s':>7}  why")
        for r in rows:
            mark = "skipped" if r["resolved"] is None else ("yes" if r["resolved"] else "NO")
            if r["resolved"] is None:
                print(f"{r['task']:<{width}}{mark:>9}  {r['why']}")
                continue
            figures = f"{r['turns']:>7}{r['tokens']:>9}{r['cost_usd']:>9.4f}{r['seconds']:>7.1f}"
            print(f"{r['task']:<{width}}{mark:>9}{figures}  {r['why']}")
        print(
            f"\n{model}: {resolved}/{len(ran)} resolved ({totals['rate']:.0%}), {totals['turns']} turns, "
            f"{totals['tokens']} tokens, ${totals['cost_usd']:.4f}, {totals['seconds']:.0f} s"
        )
    return 0 if model != "scripted" or resolved == len(ran) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["scripted", "configured"], default="scripted")
    parser.add_argument("--tasks", default="", help="comma-separated task names (default: all)")
    parser.add_argument("--task-file", action="append", default=[], type=Path, help="more tasks (JSON)")
    parser.add_argument(
        "--from-commit", action="append", default=[], help="PATH:SHA, a fix from a repository's history"
    )
    parser.add_argument("--title", help="the issue title for --from-commit (default: the commit's subject)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    all_tasks = load_tasks(args.task_file)
    for spec in args.from_commit:
        name, task = from_commit(spec, args.title)
        all_tasks[name] = task
    chosen = [n for n in args.tasks.split(",") if n] if args.tasks else list(all_tasks)
    unknown = [n for n in chosen if n not in all_tasks]
    if unknown:
        raise SystemExit(f"unknown task(s): {', '.join(unknown)}; known: {', '.join(all_tasks)}")
    sys.exit(asyncio.run(main(all_tasks, chosen, args.model, args.json)))
