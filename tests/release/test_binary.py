"""The standalone build (.ci/binary.sh → .ci/standalone.py: PyInstaller one-folder, `temporal` beside it) and its .deb
(.ci/deb.sh): run with no Python of Tamma's — `--version`, `--help`, the demo to a merge in a
fresh HOME — and the .deb installed with apt in a clean Debian container, the demo run there by a
non-root user, then removed."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
WORK = Path(os.environ.get("DEPLOY_WORK", "/tmp/tamma-ci-deploy"))


def run(argv: list[str], timeout: float = 600, **kw: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, **kw)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{argv}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done  # type: ignore[no-any-return]


def exported(script: str, name: str) -> str:
    out = run(["bash", str(ROOT / script)], env=dict(os.environ, DEPLOY_WORK=str(WORK))).stdout
    return next(line.split("=", 1)[1] for line in out.splitlines() if line.startswith(f"export {name}="))


@pytest.fixture(scope="module")
def binary() -> Path:
    folder = os.environ.get("RELEASE_BINARY_DIR") or exported(".ci/binary.sh", "RELEASE_BINARY_DIR")
    return Path(folder)


def plain_env(home: Path) -> dict[str, str]:
    """No venv, no Tamma settings: what a person who downloaded the binary has."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "TAMMA_TEMPORAL__EMBEDDED_PORT": str(free_port()),
        "TAMMA_TEMPORAL__EMBEDDED_UI_PORT": str(free_port()),
    }


def test_the_binary_runs_without_python_and_merges_the_demo(binary: Path, tmp_path: Path) -> None:
    tamma = binary / "tamma"
    home = tmp_path / "home"
    home.mkdir()
    env = plain_env(home)
    size = sum(f.stat().st_size for f in binary.rglob("*") if f.is_file() and f.name != "temporal") / 1e6
    assert run([str(tamma), "--version"], env=env).stdout.strip() == f"tamma {version('tamma')}"
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        run([str(tamma), "--help"], env=env)
        times.append(time.perf_counter() - t0)
    print(
        f"\nstandalone folder: {size:.0f} MB (temporal beside it {(binary / 'temporal').stat().st_size / 1e6:.0f} MB); "
        f"--help median {statistics.median(times):.2f} s of 5"
    )
    about = run([str(tamma), "version", "--json"], env=env).stdout
    assert '"frozen": "yes"' in about and '"temporal_cli": "1.' in about  # found beside the binary
    demo = run([str(tamma), "demo", "--dir", str(tmp_path / "pager")], env=env, cwd=home, timeout=300)
    assert "Merged" in demo.stdout, demo.stdout + demo.stderr
    assert "Sandbox: bwrap" in demo.stdout  # the bundled bubblewrap, found inside the frozen build
    run([str(tamma), "temporal", "stop"], env=env)


def test_the_deb_installs_with_apt_runs_for_a_user_and_removes_cleanly(binary: Path) -> None:
    deb = Path(os.environ.get("RELEASE_DEB") or exported(".ci/deb.sh", "RELEASE_DEB"))
    print(f"\n.deb: {deb.name} {deb.stat().st_size / 1e6:.0f} MB")
    script = (
        "set -e; apt-get update -q >/dev/null 2>&1; apt-get install -y -q /deb/" + deb.name + " >/tmp/apt.log 2>&1"
        " || { tail -5 /tmp/apt.log; exit 1; }; dpkg -s tamma | grep -E '^(Status|Version)'; command -v tamma;"
        " test -f /usr/lib/systemd/system/tamma-server.service && test -f '/usr/lib/systemd/system/tamma-worker@.service'"
        " && echo units-installed;"
        " useradd -m u1; su u1 -c 'cd && tamma demo </dev/null 2>&1 | grep -E \"Merged|✘|rror\"; tamma temporal stop';"
        " dpkg -r tamma >/dev/null; test ! -e /usr/bin/tamma && test ! -e /opt/tamma"
        " && test ! -e /usr/lib/systemd/system/tamma-server.service && echo removed-cleanly"
    )
    env = dict(os.environ, CONTAINERS_CONF=str(WORK / "containers.conf"))
    done = run(
        [
            "podman",
            "run",
            "--rm",
            "--network",
            "host",
            "--security-opt",
            "unmask=ALL",
            "-v",
            f"{deb.parent}:/deb:ro",
            "-e",
            f"TAMMA_TEMPORAL__EMBEDDED_PORT={free_port()}",
            "-e",
            f"TAMMA_TEMPORAL__EMBEDDED_UI_PORT={free_port()}",
            "localhost/python:3.11-slim-bookworm",
            "sh",
            "-c",
            script,
        ],
        env=env,
        timeout=600,
    )
    out = done.stdout
    assert "Status: install ok installed" in out and "/usr/bin/tamma" in out, out
    assert "Merged" in out, out
    assert "units-installed" in out, out
    assert "removed-cleanly" in out, out


def test_the_snap_built_from_the_standalone_folder_passes_snapd_s_checks(binary: Path, tmp_path: Path) -> None:
    """snapcraft does not run here; snapd's `snap pack` does, and it checks what snapcraft would
    pass on from packaging/snap/snapcraft.yaml (name, version, summary, grade, confinement, base,
    apps, and that each app's command is in the snap) against the real build, laid out as the
    yaml says (the archive's top folder stripped, so `tamma` at the root), then packs it."""
    import shutil

    import yaml

    sys.path.insert(0, str(ROOT / "packaging"))
    from render import Manifest  # the template mechanism packaging/render.py uses

    tpl = Manifest((ROOT / "packaging" / "snap" / "snapcraft.yaml").read_text())
    public = version("tamma").split("+")[0]  # a snap version has at most 32 characters; a tag has no +local
    snapcraft = yaml.safe_load(tpl.safe_substitute(version=public, grade="devel", repo="acme/tamma"))
    prime = tmp_path / "prime"
    shutil.copytree(binary, prime, copy_function=os.link)  # hard links: the 290 MB folder, no copy
    keys = ("name", "version", "summary", "description", "license", "grade", "confinement", "base")
    arch = run(["dpkg", "--print-architecture"]).stdout.strip()
    meta = {k: snapcraft[k] for k in keys} | {"architectures": [arch], "apps": snapcraft["apps"]}
    (prime / "meta").mkdir()

    def pack(snap_yaml: dict[str, object]) -> subprocess.CompletedProcess[str]:
        (prime / "meta" / "snap.yaml").write_text(yaml.safe_dump(snap_yaml, sort_keys=False))
        argv = ["snap", "pack", "--compression=lzo", str(prime), str(tmp_path)]
        return subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)

    # the checks are real: an app whose command is not in the snap, or a bad name, is refused
    for broken, why in (
        (meta | {"apps": {"tamma": {"command": "bin/tamma"}}}, "missing files"),
        (meta | {"name": "Tamma_CLI"}, "invalid snap name"),
    ):
        refused = pack(broken)
        assert refused.returncode != 0 and why in refused.stderr, refused.stderr
    done = pack(meta)
    assert done.returncode == 0, done.stdout + done.stderr
    snap = tmp_path / f"tamma_{public}_{arch}.snap"
    print(f"\nsnap (lzo; the store's is xz): {snap.stat().st_size / 1e6:.0f} MB")
    listing = run(["unsquashfs", "-l", str(snap)]).stdout.split()
    assert {"squashfs-root/tamma", "squashfs-root/temporal", "squashfs-root/meta/snap.yaml"} <= set(listing)
