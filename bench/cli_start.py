"""Cold start of the CLI: `tamma --help` and `tamma version` from this venv (and `--help` from the
standalone binary when RELEASE_BINARY_DIR or --binary names it), beside `python -c pass` and
`import typer, rich.markdown` (what any typer CLI loads to print its help: the floor), all measured
in the same run. With `hyperfine` on PATH (Debian: `apt-get install hyperfine`) it does the timing
(warm-up runs, then --runs runs; the mean is reported); without it the runs are timed here.

Goal: --help under 0.25 s from a venv and 0.6 s from the binary on the reference machine, where
typer + rich alone take 0.085 s; on another machine compare the ratio to the floor (0.25 s is
~2.9x it).

Bytecode caching is on for the measured commands (PYTHONDONTWRITEBYTECODE removed): an installed
package has its .pyc files, and measuring source compilation would say nothing about Tamma.

    python bench/cli_start.py [--runs 15] [--binary DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
FLOOR = "import typer, rich"


def env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    clean["COLUMNS"] = "100"
    return clean


def with_hyperfine(cases: dict[str, list[str]], runs: int) -> dict[str, float]:
    """Means in seconds, from hyperfine's JSON export (`-N`: no shell between it and the command)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "runs.json"
        argv = ["hyperfine", "-N", "--warmup", "2", "--runs", str(runs), "--export-json", str(out), "--style", "none"]
        for name, command in cases.items():
            argv += ["--command-name", name, subprocess.list2cmdline(command)]
        subprocess.run(argv, env=env(), check=True, stdout=subprocess.DEVNULL)
        results = json.loads(out.read_text())["results"]
    return {r["command"]: r["mean"] for r in results}


def by_hand(cases: dict[str, list[str]], runs: int) -> dict[str, float]:
    """Medians in seconds, one warm-up run each."""
    found = {}
    for name, argv in cases.items():
        subprocess.run(argv, capture_output=True, check=True, env=env())
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            subprocess.run(argv, capture_output=True, check=True, env=env())
            times.append(time.perf_counter() - t0)
        found[name] = statistics.median(times)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--binary", default=os.environ.get("RELEASE_BINARY_DIR", ""))
    args = parser.parse_args()
    cases = {
        "python -c pass": [sys.executable, "-c", "pass"],
        FLOOR: [sys.executable, "-c", "import typer, rich.markdown"],
        "tamma --help (venv)": [str(BIN / "tamma"), "--help"],
        "tamma version (venv)": [str(BIN / "tamma"), "version"],
    }
    if args.binary:
        cases["tamma --help (binary)"] = [str(Path(args.binary) / "tamma"), "--help"]
    hyperfine = shutil.which("hyperfine")
    found = with_hyperfine(cases, args.runs) if hyperfine else by_hand(cases, args.runs)
    print(f"{'mean' if hyperfine else 'median'} of {args.runs} runs ({'hyperfine' if hyperfine else 'timed here'})")
    for name, seconds in found.items():
        ratio = f"  {seconds / found[FLOOR]:4.2f}x {FLOOR}" if name != FLOOR else ""
        print(f"{name:24} {seconds:6.3f} s{ratio}")


if __name__ == "__main__":
    main()
