"""The installer manifests a release writes (packaging/render.py): the Homebrew formula (tap
layout), the Scoop manifest, the snapcraft.yaml and the Chocolatey package. Homebrew, Scoop,
snapcraft and choco do not run here; what does: Ruby's own syntax check of the formula, Scoop's
published JSON schema, the nuspec schema of Chocolatey's NuGet fork, and the archive
names and SHA-256 sums each manifest names, checked against real files. (snapd's own check of the
snap's metadata, with the real standalone build inside, is in test_binary.py.)"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from xml.etree import ElementTree

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "tests" / "fixtures" / "schemas"
sys.path.insert(0, str(ROOT / "packaging"))
import render  # noqa: E402

VERSION = "1.4.0"


def fake_release(folder: Path, version: str = VERSION) -> dict[str, str]:
    """One small archive per release target, laid out as .ci/standalone.py packs them, and their
    SHA256SUMS; returns file name -> sha256."""
    folder.mkdir(parents=True, exist_ok=True)
    for suffix in render.TARGETS.values():
        archive = folder / f"tamma-{version}-{suffix}"
        if suffix.endswith(".zip"):
            with zipfile.ZipFile(archive, "w") as z:
                z.writestr("tamma/tamma.exe", f"MZ {suffix}")
                z.writestr("tamma/_internal/base_library.zip", "")
        else:
            inner = folder / f"src-{suffix}" / "tamma"
            inner.mkdir(parents=True)
            (inner / "tamma").write_text(f"#!/bin/sh\necho {suffix}\n")
            with tarfile.open(archive, "w:gz") as t:
                t.add(inner, arcname="tamma")
    sums = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in folder.glob("tamma-*")}
    (folder / "SHA256SUMS").write_text("".join(f"{h}  {n}\n" for n, h in sorted(sums.items())))
    return sums


def render_into(tmp_path: Path, version: str = VERSION) -> tuple[dict[str, str], Path]:
    sums = fake_release(tmp_path / "dist", version)
    out = tmp_path / "out"
    sums_file = tmp_path / "dist" / "SHA256SUMS"
    render.main(["--version", version, "--sums", str(sums_file), "--repo", "acme/tamma", "--out", str(out)])
    return sums, out


def test_the_homebrew_formula_is_valid_ruby_and_names_each_platform_s_archive_and_sum(tmp_path: Path) -> None:
    sums, out = render_into(tmp_path)
    formula = out / "homebrew" / "Formula" / "tamma.rb"  # the tap's layout: Formula/<name>.rb
    done = subprocess.run(["ruby", "-wc", str(formula)], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "Syntax OK" and not done.stderr, done.stderr
    text = formula.read_text()
    assert "@{" not in text and f'version "{VERSION}"' in text and 'license "MIT"' in text
    assert "class Tamma < Formula" in text and 'bin.install_symlink libexec/"tamma"' in text
    # each on_<os> / on_<arch> block holds the url and sha256 of that platform's archive
    pairs = re.findall(
        r'on_(macos|linux) do\s+on_arm do\s+url "([^"]+)"\s+sha256 "(\w+)"\s+end\s+'
        r'on_intel do\s+url "([^"]+)"\s+sha256 "(\w+)"',
        text,
    )
    assert len(pairs) == 2
    for system, arm_url, arm_sum, intel_url, intel_sum in pairs:
        for url, digest, arch in ((arm_url, arm_sum, "arm64"), (intel_url, intel_sum, "x86_64")):
            name = url.rsplit("/", 1)[1]
            assert name == f"tamma-{VERSION}-{system}-{arch}.tar.gz"
            assert url == f"https://github.com/acme/tamma/releases/download/v{VERSION}/{name}"
            assert sums[name] == digest


def test_the_scoop_manifest_passes_scoop_s_schema_and_its_hash_is_the_zip_s(tmp_path: Path) -> None:
    sums, out = render_into(tmp_path)
    manifest = json.loads((out / "scoop" / "tamma.json").read_text())
    schema = json.loads((SCHEMAS / "scoop-manifest.schema.json").read_text())
    jsonschema.validate(manifest, schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    arch = manifest["architecture"]["64bit"]
    name = arch["url"].rsplit("/", 1)[1]
    assert manifest["version"] == VERSION and name == f"tamma-{VERSION}-windows-x86_64.zip"
    assert arch["hash"] == sums[name]
    with zipfile.ZipFile(tmp_path / "dist" / name) as z:  # what Scoop extracts, then links as `tamma`
        assert f"{arch['extract_dir']}/{manifest['bin']}" in z.namelist()
    # the schema is not a rubber stamp: a broken hash or an unknown key is refused
    for broken in ({**manifest, "hash": "nothex"}, {**manifest, "installs": "x"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema)


def test_the_snapcraft_yaml_names_each_architecture_s_archive_and_checksum(tmp_path: Path) -> None:
    sums, out = render_into(tmp_path)
    snap = yaml.safe_load((out / "snap" / "snapcraft.yaml").read_text())
    assert snap["name"] == "tamma" and snap["version"] == VERSION and snap["grade"] == "stable"
    assert snap["confinement"] == "classic" and snap["base"] == "core22"
    part = snap["parts"]["tamma"]
    sources = {k.removeprefix("on "): v for item in part["source"] for k, v in item.items()}
    checks = {k.removeprefix("on "): v for item in part["source-checksum"] for k, v in item.items()}
    assert set(sources) == set(checks) == {"amd64", "arm64"}
    for debian_arch, arch in (("amd64", "x86_64"), ("arm64", "arm64")):
        name = sources[debian_arch].rsplit("/", 1)[1]
        assert name == f"tamma-{VERSION}-linux-{arch}.tar.gz"
        assert checks[debian_arch] == f"sha256/{sums[name]}"
    assert snap["apps"]["tamma"]["command"] == "tamma"
    # a pre-release is not offered on the stable channel
    _, out_rc = render_into(tmp_path / "rc", "1.5.0rc1")
    assert yaml.safe_load((out_rc / "snap" / "snapcraft.yaml").read_text())["grade"] == "devel"


def test_a_release_missing_an_archive_renders_nothing_and_says_which(tmp_path: Path) -> None:
    fake_release(tmp_path / "dist")
    sums_file = tmp_path / "dist" / "SHA256SUMS"
    kept = [line for line in sums_file.read_text().splitlines() if "macos-arm64" not in line]
    sums_file.write_text("".join(line + "\n" for line in kept))
    out = tmp_path / "out"
    with pytest.raises(SystemExit, match=f"tamma-{VERSION}-macos-arm64.tar.gz"):
        render.main(["--version", VERSION, "--sums", str(sums_file), "--out", str(out)])
    assert not out.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--version", "v1.4.0"], "not a release version"),
        (["--version", "1.4"], "not a release version"),
        (["--version", "1.4.0+g1234abc"], "not a release version"),
        (["--repo", "acme/tamma; rm -rf /"], "not owner/name"),
        (["--repo", 'acme/x" do end; system("id")'], "not owner/name"),
    ],
)
def test_bad_input_to_render_is_refused_with_what_was_wrong(tmp_path: Path, argv: list[str], message: str) -> None:
    fake_release(tmp_path / "dist")
    base = {"--version": VERSION, "--repo": "acme/tamma"}
    base.update(dict(zip(argv[::2], argv[1::2], strict=True)))
    args = [x for kv in base.items() for x in kv] + ["--sums", str(tmp_path / "dist" / "SHA256SUMS")]
    with pytest.raises(SystemExit, match=message):
        render.main([*args, "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_a_checksum_file_that_is_not_sha256sum_output_is_refused_with_its_line(tmp_path: Path) -> None:
    sums_file = tmp_path / "SHA256SUMS"
    sums_file.write_text("0" * 64 + "  tamma-1.4.0-linux-x86_64.tar.gz\nnot a checksum line\n")
    with pytest.raises(SystemExit, match=r"SHA256SUMS:2: not a `sha256sum` line"):
        render.main(["--version", VERSION, "--sums", str(sums_file), "--out", str(tmp_path / "out")])


def test_the_chocolatey_package_passes_chocolatey_s_nuspec_schema_and_installs_the_zip_by_its_sum(
    tmp_path: Path,
) -> None:
    """choco does not run here: the nuspec is checked against the schema Chocolatey's NuGet fork
    validates with, and the install script's URL and SHA-256 against the release's real zip."""
    import xmlschema  # the `deploy` extra: this module is collected by the main suite too

    sums, out = render_into(tmp_path)
    package = out / "chocolatey"
    schema = xmlschema.XMLSchema(SCHEMAS / "chocolatey-nuspec.xsd")
    schema.validate(package / "tamma.nuspec")
    ns = {"n": "http://schemas.microsoft.com/packaging/2015/06/nuspec.xsd"}
    meta = ElementTree.parse(package / "tamma.nuspec").getroot().find("n:metadata", ns)
    assert meta is not None
    assert meta.findtext("n:id", namespaces=ns) == "tamma" and meta.findtext("n:version", namespaces=ns) == VERSION
    assert meta.findtext("n:projectSourceUrl", namespaces=ns) == "https://github.com/acme/tamma"
    install = (package / "tools" / "chocolateyinstall.ps1").read_text()
    assert "@{" not in (package / "tamma.nuspec").read_text()
    assert "$packageArgs = @{" in install and "Install-ChocolateyZipPackage @packageArgs" in install
    assert "@{version}" not in install and "@@" not in install
    url = re.search(r"url64bit\s*=\s*'([^']+)'", install)
    digest = re.search(r"checksum64\s*=\s*'([0-9a-f]{64})'", install)
    assert url and digest and "checksumType64 = 'sha256'" in install
    name = url[1].rsplit("/", 1)[1]
    assert url[1] == f"https://github.com/acme/tamma/releases/download/v{VERSION}/{name}"
    assert name == f"tamma-{VERSION}-windows-x86_64.zip" and digest[1] == sums[name]
    with zipfile.ZipFile(tmp_path / "dist" / name) as z:  # what Install-ChocolateyZipPackage unpacks
        assert "tamma/tamma.exe" in z.namelist()
    assert f"-ZipFileName '{name}'" in (package / "tools" / "chocolateyuninstall.ps1").read_text()
    # the schema is not a rubber stamp: a nuspec without its description, or with an unknown
    # element, is refused
    text = (package / "tamma.nuspec").read_text()
    for broken in (
        re.sub(r"<description>.*?</description>", "", text, flags=re.S),
        text.replace("<tags>", "<tagz>x</tagz><tags>"),
    ):
        with pytest.raises(xmlschema.XMLSchemaValidationError):
            schema.validate(broken)
    # NuGet versions: a pre-release after a dash, a post-release as a fourth number
    for version, nuget in (("1.5.0rc1", "1.5.0-rc1"), ("1.5.0.post2", "1.5.0.2")):
        _, out_v = render_into(tmp_path / version, version)
        assert f"<version>{nuget}</version>" in (out_v / "chocolatey" / "tamma.nuspec").read_text()
        schema.validate(out_v / "chocolatey" / "tamma.nuspec")
