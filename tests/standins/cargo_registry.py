"""A Cargo registry on 127.0.0.1 speaking the sparse protocol (`config.json`, index files by
name, `.crate` downloads), serving the crates under tests/fixtures/cargo-registry/<name>-<version>/
— a private registry for the setup tests, since crates.io is not reachable here. `base` is the
URL the registry is known by (the name a repository's `.cargo/config.toml` gives it)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.standins.http import Reply, Request, StandIn, serve

CRATES = Path(__file__).resolve().parents[1] / "fixtures" / "cargo-registry"


def crate_file(name: str, version: str) -> bytes:
    """The .crate (a gzipped tar of `<name>-<version>/`), byte for byte the same every time, so
    its checksum in a Cargo.lock stays valid."""
    folder = CRATES / f"{name}-{version}"
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            data = path.read_bytes()
            info = tarfile.TarInfo(f"{name}-{version}/{path.relative_to(folder).as_posix()}")
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def _index_path(name: str) -> str:
    if len(name) <= 2:
        return f"{len(name)}/{name}"
    if len(name) == 3:
        return f"3/{name[0]}/{name}"
    return f"{name[:2]}/{name[2:4]}/{name}"


def responder(base: str) -> object:
    crates = {p.name.rsplit("-", 1)[0]: p.name.rsplit("-", 1)[1] for p in CRATES.iterdir() if p.is_dir()}

    def answer(req: Request) -> Reply:
        path = req.path.split("?")[0]
        if path.startswith("http://"):  # asked through it as a proxy: the absolute form
            path = "/" + path.split("/", 3)[3]
        if path == "/index/config.json":
            return Reply(200, {"dl": f"{base}/api/v1/crates", "api": base})
        for name, version in crates.items():
            if path == f"/index/{_index_path(name)}":
                entry = {
                    "name": name, "vers": version, "deps": [], "features": {}, "yanked": False,
                    "cksum": hashlib.sha256(crate_file(name, version)).hexdigest(),
                }  # fmt: skip
                return Reply(200, (json.dumps(entry) + "\n").encode())
            if path == f"/api/v1/crates/{name}/{version}/download":
                return Reply(200, crate_file(name, version), {"content-type": "application/gzip"})
        return Reply(404, b"not found")

    return answer


@contextmanager
def cargo_registry(base: str) -> Iterator[StandIn]:
    with serve(responder(base)) as standin:  # type: ignore[arg-type]
        yield standin
