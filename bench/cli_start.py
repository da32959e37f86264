"""Cold start of the CLI: `tamma --help` from this venv (and from the standalone binary when
RELEASE_BINARY_DIR or --binary names it) against `python -c pass` and `import typer, rich` (the
floor any typer CLI pays), measured in the same run with hyperfine when installed, else timed
here. Goal: --help under 0.25 s from a venv, 0.6 s from the binary, on the reference machine
(where typer + rich alone take 0.085 s; compare the ratio on other machines).

    python bench/cli_start.py [--runs 10] [--binary DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def timed(argv: list[str], runs: int) -> float:
    subprocess.run(argv, capture_output=True, check=True)  # warm the page cache once
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--binary", default=os.environ.get("RELEASE_BINARY_DIR", ""))
    args = parser.parse_args()
    cases = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "import typer, rich": [sys.executable, "-c", "import typer, rich.markdown"],
        "tamma --help (venv)": [str(BIN / "tamma"), "--help"],
        "tamma version (venv)": [str(BIN / "tamma"), "version"],
    }
    if args.binary:
        cases["tamma --help (binary)"] = [str(Path(args.binary) / "tamma"), "--help"]
    print(f"median of {args.runs} (hyperfine {'found' if shutil.which('hyperfine') else 'not installed: timed here'})")
    floor = None
    for name, argv in cases.items():
        median = timed(argv, args.runs)
        floor = median if name == "import typer, rich" else floor
        ratio = f"  {median / floor:4.1f}x typer+rich" if floor and name != "import typer, rich" else ""
        print(f"{name:24} {median:6.3f} s{ratio}")


if __name__ == "__main__":
    main()
