"""A Go module proxy on 127.0.0.1 (the GOPROXY protocol: `$module/@v/list`, `.info`, `.mod`,
`.zip`), serving the modules under tests/fixtures/goproxy/<module>@<version>/ — a private
registry for the setup tests, since proxy.golang.org is not reachable here."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.standins.http import Reply, Request, StandIn, serve

MODULES = Path(__file__).resolve().parents[1] / "fixtures" / "goproxy"


def _versions(module: str) -> list[str]:
    parent = MODULES / Path(module).parent
    name = Path(module).name
    return sorted(p.name.split("@", 1)[1] for p in parent.glob(f"{name}@v*") if p.is_dir())


def _zip(module: str, version: str) -> bytes:
    folder = MODULES / f"{module}@{version}"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            z.writestr(f"{module}@{version}/{path.relative_to(folder).as_posix()}", path.read_bytes())
    return out.getvalue()


def answer(req: Request) -> Reply:
    path = req.path.split("?")[0].lstrip("/")
    if "/@v/" not in path:
        return Reply(404, b"not found")
    module, leaf = path.split("/@v/", 1)
    if leaf == "list":
        return Reply(200, "".join(f"{v}\n" for v in _versions(module)).encode())
    version, _, ext = leaf.rpartition(".")
    folder = MODULES / f"{module}@{version}"
    if not folder.is_dir():
        return Reply(404, f"{module}@{version}: not found".encode())
    if ext == "info":
        return Reply(200, json.dumps({"Version": version, "Time": "2026-01-01T00:00:00Z"}).encode())
    if ext == "mod":
        return Reply(200, (folder / "go.mod").read_bytes())
    if ext == "zip":
        return Reply(200, _zip(module, version), {"content-type": "application/zip"})
    return Reply(404, b"not found")


@contextmanager
def goproxy() -> Iterator[StandIn]:
    with serve(answer) as standin:
        yield standin
