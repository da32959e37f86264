"""Fill in the installer manifests of a release: the Homebrew formula, the Scoop manifest, the
snapcraft.yaml and the Chocolatey package (nuspec and install scripts), from the version and the
SHA256SUMS of the release's standalone archives.

    python packaging/render.py --version 1.2.0 --sums dist/SHA256SUMS --repo owner/tamma --out out/

Writes out/homebrew/Formula/tamma.rb (the tap's layout), out/scoop/tamma.json,
out/snap/snapcraft.yaml and out/chocolatey/ (`choco pack out/chocolatey/tamma.nuspec` builds
it). Every archive a manifest names must be in SHA256SUMS: a release missing one (a matrix job
that failed) renders nothing, and says which is missing.
"""

from __future__ import annotations

import argparse
import re
import string
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: the standalone archives of a release (.ci/standalone.py names them)
TARGETS = {
    "linux_x86_64": "linux-x86_64.tar.gz",
    "linux_arm64": "linux-arm64.tar.gz",
    "macos_x86_64": "macos-x86_64.tar.gz",
    "macos_arm64": "macos-arm64.tar.gz",
    "windows_x86_64": "windows-x86_64.zip",
}
OUTPUTS = {
    "homebrew/tamma.rb": "homebrew/Formula/tamma.rb",
    "scoop/tamma.json": "scoop/tamma.json",
    "snap/snapcraft.yaml": "snap/snapcraft.yaml",
    "chocolatey/tamma.nuspec": "chocolatey/tamma.nuspec",
    "chocolatey/tools/chocolateyinstall.ps1": "chocolatey/tools/chocolateyinstall.ps1",
    "chocolatey/tools/chocolateyuninstall.ps1": "chocolatey/tools/chocolateyuninstall.ps1",
}
VERSION = re.compile(r"^\d+\.\d+\.\d+(?:(?:a|b|rc)\d+)?(?:\.post\d+)?(?:\.dev\d+)?$")  # no +local: a tag's
REPO = re.compile(r"^[A-Za-z0-9-]+/[A-Za-z0-9._-]+$")


class Manifest(string.Template):
    """`@{name}` placeholders: `$` is Scoop's own (autoupdate) and `#{}` Ruby's."""

    delimiter = "@"
    pattern = r"@(?:(?P<escaped>@)|{(?P<braced>[a-z0-9_]+)}|(?P<named>(?!))|(?P<invalid>))"  # type: ignore[assignment]


def read_sums(path: Path) -> dict[str, str]:
    sums = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        match = re.fullmatch(r"([0-9a-f]{64}) [ *](\S+)", line.strip())
        if not match:
            raise SystemExit(f"{path}:{number}: not a `sha256sum` line: {line[:80]!r}")
        sums[match[2]] = match[1]
    return sums


def values(version: str, repo: str, sums: dict[str, str]) -> dict[str, str]:
    if not VERSION.match(version):
        raise SystemExit(f"--version {version!r} is not a release version (X.Y.Z, as the tag vX.Y.Z without the v)")
    if not REPO.match(repo):
        raise SystemExit(f"--repo {repo!r} is not owner/name")
    found = {"version": version, "repo": repo, "owner": repo.split("/")[0]}
    found["grade"] = "devel" if re.search(r"(a|b|rc|\.dev)\d+", version) else "stable"
    # NuGet's versions: a pre-release after a dash (1.5.0rc1 -> 1.5.0-rc1, 1.5.0.dev3 -> 1.5.0-dev3);
    # a post-release as a fourth number, so it sorts after its release (1.5.0.post1 -> 1.5.0.1)
    core, pre = re.match(r"^(\d+\.\d+\.\d+)(.*)$", version).groups()  # type: ignore[union-attr]
    post = re.fullmatch(r"\.post(\d+)", pre)
    prerelease = f"-{pre.lstrip('.').replace('.', '-')}" if pre else ""
    found["choco_version"] = f"{core}.{post[1]}" if post else core + prerelease
    missing = []
    for key, suffix in TARGETS.items():
        name = f"tamma-{version}-{suffix}"
        if name in sums:
            found[f"sha256_{key}"] = sums[name]
        else:
            missing.append(name)
    if missing:
        raise SystemExit(f"not in SHA256SUMS (did its build fail?): {', '.join(missing)}")
    return found


def render(version: str, repo: str, sums: dict[str, str], out: Path) -> list[Path]:
    filled = values(version, repo, sums)
    written = []
    for template, target in OUTPUTS.items():
        text = Manifest((HERE / template).read_text()).substitute(filled)
        path = out / target
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", required=True)
    parser.add_argument("--sums", type=Path, required=True, help="SHA256SUMS of the release's archives")
    parser.add_argument("--repo", default="tamma-dev/tamma", help="owner/name of the GitHub repository")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    for path in render(args.version, args.repo, read_sums(args.sums), args.out):
        print(path, file=sys.stderr)


if __name__ == "__main__":
    main()
