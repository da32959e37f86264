"""Setup and baseline cost per repository shape: what the first task on a repository pays, what
every later task pays, and what the baseline (the base commit's test run) adds.

    python bench/setup_cache.py [--shapes inflection,node-mocha,c-make,rust-crate,more-itertools]

For each shape (the real repositories of tests/fixtures/repos), in this run and on this machine:
- cold: detection, setup from nothing (package downloads through the setup proxy) and the
  baseline run, as a task's first test step does it;
- warm: the same for a second task on the same base commit (the environment and the baseline
  come from the cache: only the export and the verification of the environment remain);
- one test run of the change, the reference a task pays anyway;
and the ratios cold/warm and baseline/test run. Goal: warm under 2 s; the baseline costs one test
run, once per base commit.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent))

from tamma.activities.issue import _TestRunner
from tamma.agent.testing import TestCommand
from tamma.agent.workspace import Workspace
from tamma.config import Settings
from tamma.platforms.local import local_repo_ref
from tamma.runtime.wiring import build_activities

FIXTURES = Path(__file__).parent.parent / "tests" / "fixtures" / "repos"
NEEDS = {"node-mocha": "npm", "rust-crate": "cargo", "c-make": "make"}


def repo(name: str, dest: Path) -> Path:
    shutil.copytree(FIXTURES / name, dest)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base"]):
        subprocess.run(["git", *args], cwd=dest, check=True, capture_output=True)
    return dest


async def measure(name: str, tmp: Path) -> tuple[float, float, float, float, str]:
    path = repo(name, tmp / name)
    settings = Settings(data_dir=tmp / f"data-{name}", agent={"sandbox": {"timeout_s": 600}})
    acts = build_activities(settings)
    ref = local_repo_ref(path)
    times: list[float] = []
    for _ in range(2):  # cold, then warm
        ws = await Workspace.clone(str(path), "main", tmp / "work")
        started = time.perf_counter()
        prepared = await acts.prepare_tests(ref, ws, "main")
        times.append(time.perf_counter() - started)
        ws.remove()
    ws = await Workspace.clone(str(path), "main", tmp / "work")
    runner = _TestRunner(acts, ref, ws, "main")
    await runner.prepared()
    started = time.perf_counter()
    await runner.run_once()
    test_run = time.perf_counter() - started
    ws.remove()
    started = time.perf_counter()
    await acts._run_baseline(TestCommand(prepared.command, prepared.why), path, prepared.environment)
    baseline = time.perf_counter() - started
    return times[0], times[1], test_run, baseline, prepared.command or "(none)"


async def main(shapes: list[str]) -> None:
    print(f"{'shape':<16}{'cold s':>9}{'warm s':>9}{'cold/warm':>11}{'test run s':>12}{'baseline s':>12}{'base/test':>11}  command")
    with tempfile.TemporaryDirectory(prefix="tamma-bench-setup-") as tmp:
        for name in shapes:
            if name in NEEDS and shutil.which(NEEDS[name]) is None and not (Path.home() / ".cargo/bin" / NEEDS[name]).exists():
                print(f"{name:<16}skipped: {NEEDS[name]} not installed")
                continue
            cold, warm, test_run, baseline, command = await measure(name, Path(tmp))
            print(
                f"{name:<16}{cold:>9.2f}{warm:>9.2f}{cold / warm:>10.1f}×{test_run:>12.2f}{baseline:>12.2f}"
                f"{baseline / test_run:>10.1f}×  {command}"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="inflection,more-itertools,node-mocha,c-make,rust-crate")
    asyncio.run(main(parser.parse_args().shapes.split(",")))
