"""Context and cost of a long coding session, with the conversation condensed and without.

    python bench/agent_context.py [--turns 44] [--window 64000]

A scripted trajectory of `--turns` tool calls over large real files (modules of the Python
standard library this interpreter ships, PSF licence: 400-line reads, searches, file finds)
runs twice through Tamma's real coding loop, the real Anthropic SDK and the Messages API
stand-in on 127.0.0.1: once with the conversation condensed at `agent.condense_at` (0.6) of a
`--window`-token context window, once with condensing off. The stand-in counts each request's
tokens the way the API reports them, prompt caching included (tests/standins/anthropic_api.py,
`PromptCache`: Tamma's cache breakpoints on the tools, the system prompt and the newest turn).

Prints per run: requests, peak prompt tokens (and its share of the window), total input tokens
(uncached + cache reads + cache writes), the cached share, and the ratios. Goals (issue 21):
peak <= 60 % of the window, total input <= 0.5x the uncondensed run, cached share >= 70 %.
Token counts are deterministic: no timing is measured, so `tests/agent/test_context_bench.py`
can hold the goals.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tamma.agent.condense import ContextPolicy  # noqa: E402
from tamma.agent.loop import run_agent  # noqa: E402
from tamma.agent.tools import Toolbox  # noqa: E402
from tamma.agent.workspace import Workspace  # noqa: E402
from tamma.models import Budget  # noqa: E402
from tamma.providers.anthropic import AnthropicProvider  # noqa: E402
from tests.standins import anthropic_api as api  # noqa: E402
from tests.standins.http import Reply, Request, serve  # noqa: E402

#: large, stable modules of the standard library (PSF licence), copied into the workspace
MODULES = ("argparse.py", "inspect.py", "typing.py", "pathlib.py", "tarfile.py", "subprocess.py", "logging/__init__.py")
KEY = "sk-ant-bench"


def make_repository(path: Path) -> Path:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    path.mkdir(parents=True)
    for name in MODULES:
        target = path / "lib" / name.replace("/__init__", "_init")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(stdlib / name, target)
    (path / "LICENSE-PSF.txt").write_text("Python Software Foundation License; these files come from CPython.\n")
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    subprocess.run([*git, "-C", str(path), "add", "-A"], check=True)
    subprocess.run([*git, "-C", str(path), "commit", "-qm", "files"], check=True)
    return path


def trajectory(files: list[str], turns: int) -> list[dict[str, Any]]:
    """The tool calls of a session that reads its way through large files: mostly 400-line
    reads, a search every fourth turn, a file listing every seventh."""
    calls: list[dict[str, Any]] = []
    starts = dict.fromkeys(files, 1)
    cycle = itertools.cycle(files)
    for k in range(turns):
        if k % 7 == 6:
            calls.append({"name": "find_files", "input": {"pattern": "**/*.py"}})
        elif k % 4 == 3:
            calls.append({"name": "search", "input": {"pattern": r"def _\w+\(self", "path": "lib", "context": 1}})
        else:
            f = next(cycle)
            calls.append({"name": "read_file", "input": {"path": f, "start_line": starts[f]}})
            starts[f] += 400
    return calls


class Model:
    """The stand-in's answers: the trajectory's next call, then a summary; every request's
    usage counted by PromptCache and kept."""

    def __init__(self, calls: list[dict[str, Any]]) -> None:
        self.calls = list(calls)
        self.cache = api.PromptCache()
        self.usages: list[dict[str, int]] = []

    def __call__(self, req: Request) -> Reply:
        refused = api.protocol_problem(req, KEY)
        if refused is not None:
            return refused
        used = self.cache.usage(req.json)
        self.usages.append(used)
        counts = {
            "input_tokens": used["input_tokens"],
            "cache_read": used["cache_read_input_tokens"],
            "cache_write": used["cache_creation_input_tokens"],
        }
        if not self.calls:
            return api.as_asked(
                req, Reply(200, api.message([api.text("Read what was needed; done.")], "end_turn", **counts))
            )
        call = self.calls.pop(0)
        return api.as_asked(
            req, Reply(200, api.message([api.tool_use(call["name"], call["input"])], "tool_use", **counts))
        )


async def one_run(repo: Path, work: Path, calls: list[dict[str, Any]], context: ContextPolicy) -> dict[str, float]:
    ws = await Workspace.clone(str(repo), "main", work)

    async def no_tests() -> Any:
        raise AssertionError("the trajectory runs no tests")

    toolbox = Toolbox(ws, no_tests)
    model = Model(calls)
    condensed: list[str] = []
    with serve(model) as s:
        provider = AnthropicProvider(api_key=KEY, model="claude-bench", base_url=s.url)
        outcome = await run_agent(
            provider,
            toolbox,
            "You are a careful engineer. Read before you change anything.",
            "Find where argument defaults are resolved and explain it.",
            len(calls) + 5,
            lambda t, w: condensed.append(w) if w.startswith("condensed") else None,
            budget=Budget(max_tokens=None, max_cost_usd=None),  # the uncondensed run spends more than a task may
            context=context,
        )
    prompts = [
        u["input_tokens"] + u["cache_read_input_tokens"] + u["cache_creation_input_tokens"] for u in model.usages
    ]
    reads = sum(u["cache_read_input_tokens"] for u in model.usages)
    return {
        "turns": outcome.turns,
        "requests": len(prompts),
        "peak": max(prompts),
        "total": sum(prompts),
        "cached": reads / sum(prompts),
        "condensed": len(condensed),
    }


async def measure(turns: int, window: int) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="tamma-context-") as tmp:
        root = Path(tmp)
        repo = make_repository(root / "repo")
        files = [str(p.relative_to(repo)) for p in sorted((repo / "lib").rglob("*.py"))]
        calls = trajectory(files, turns)
        on = await one_run(repo, root / "on", calls, ContextPolicy(window_tokens=window))
        off = await one_run(repo, root / "off", calls, ContextPolicy(window_tokens=10**12))
    return {"condensed": on, "not condensed": off}


def report(turns: int, window: int, runs: dict[str, dict[str, float]]) -> bool:
    print(f"a {turns}-call trajectory over {len(MODULES)} standard-library modules; window {window:,} tokens")
    print(
        f"\n{'run':<15}{'requests':>9}{'condensings':>12}{'peak tokens':>13}{'of window':>10}"
        f"{'total input':>13}{'cached':>8}"
    )
    for name, r in runs.items():
        print(
            f"{name:<15}{r['requests']:>9.0f}{r['condensed']:>12.0f}{r['peak']:>13,.0f}{r['peak'] / window:>10.0%}"
            f"{r['total']:>13,.0f}{r['cached']:>8.0%}"
        )
    on, off = runs["condensed"], runs["not condensed"]
    ratio = on["total"] / off["total"]
    goals = [
        (f"peak context {on['peak'] / window:.0%} of the window", on["peak"] <= 0.6 * window, "<= 60 %"),
        (f"total input {ratio:.2f}x the uncondensed run", ratio <= 0.5, "<= 0.5x"),
        (f"cached share {on['cached']:.0%}", on["cached"] >= 0.7, ">= 70 %"),
    ]
    print()
    for what, ok, goal in goals:
        print(f"{what} (goal {goal}): {'met' if ok else 'NOT met'}")
    return all(ok for _, ok, _ in goals)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=44)
    parser.add_argument("--window", type=int, default=64_000, help="the model's context window, in tokens")
    args = parser.parse_args()
    met = report(args.turns, args.window, asyncio.run(measure(args.turns, args.window)))
    sys.exit(0 if met else 1)
