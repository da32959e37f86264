"""`tamma doctor`: what Tamma would run on a repository, before anyone assigns it work.

It does exactly what a task's first test step does — clone the default branch, detect the test
command on it, set up (or reuse) the environment in the sandbox, run the tests on the base commit
— and prints what it found, so a broken setup is found by the person who can fix it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from tamma.activities.issue import Prepared
from tamma.agent.sandbox import require_isolation, toolchain_dirs
from tamma.agent.workspace import Workspace
from tamma.config import Settings
from tamma.platforms.local import LocalPlatform, local_repo_ref
from tamma.runtime.wiring import build_activities


async def diagnose(settings: Settings, repo: Path, console: Console) -> int:
    """0 when the repository can be tested; 1 when it cannot (broken, or nothing to run)."""
    ref = local_repo_ref(repo)
    platform = LocalPlatform(ref, settings.data_dir)
    base = await platform.default_branch()
    sandbox = settings.agent.sandbox
    console.print(f"[bold]Repository[/]  {escape(str(platform.path))} (default branch {escape(base)})")
    console.print(f"[bold]Sandbox[/]     {escape(require_isolation(sandbox))}")
    tools = ", ".join(str(t) for t in toolchain_dirs(sandbox)) or "none found"
    console.print(f"[bold]Toolchains[/]  {escape(tools)}")
    acts = build_activities(settings)
    with tempfile.TemporaryDirectory(prefix="tamma-doctor-") as tmp:
        ws = await Workspace.clone(platform.clone_url(), base, Path(tmp), platform.git_env())
        try:
            prepared: Prepared = await acts.prepare_tests(ref, ws, base)
        finally:
            ws.remove()
    env = prepared.environment
    setup = env.command or "none (nothing to install)"
    state = "reused from the cache" if env.cached else ("FAILED" if env.failed else "built")
    console.print(f"[bold]Setup[/]       {escape(setup)}" + (f" — {state}" if env.command else ""))
    if env.failed and env.result is not None:
        console.print(escape("\n".join(env.result.output.strip().splitlines()[-15:])), style="dim")
    baseline = prepared.baseline
    if prepared.command is None:
        console.print(f"[bold]Tests[/]       [yellow]none[/]: {escape(baseline.summary)}")
        console.print("Tamma would open pull requests marked 'Not tested' and wait for a person before merging.")
        return 1
    console.print(f"[bold]Tests[/]       {escape(prepared.command)}  ({escape(prepared.why)})")
    console.print(f"[bold]Baseline[/]    {escape(baseline.summary)}")
    if baseline.counts.failed_ids:
        shown = ", ".join(baseline.counts.failed_ids[:20])
        console.print(f"             already failing: {escape(shown)}")
    if baseline.broken:
        console.print(f"[red]Cannot test this repository:[/] {escape(baseline.explain())}")
        return 1
    if not baseline.counts.known:
        console.print(
            "[yellow]The runner's summary was not recognised: a change that leaves its exit code as it was on "
            "the base commit waits for a person (set agent.test_command to a runner Tamma reads).[/]"
        )
    console.print("[green]Tamma can test changes to this repository.[/]")
    return 0
