"""The repository's own environment: a setup step that installs its dependencies, inside the
sandbox, with network only to an allowlist of package registries, cached per repository and
lockfile hash so iterations do not reinstall.

Which setup runs: ``agent.setup_command``, else the repository's ``.tamma/setup.sh``, else one
detected from its files (a venv plus ``pip install`` for Python projects, ``npm ci`` for Node).
The environment lives outside the workspace (``<data dir>/envs``) and is shown to the sandbox at
one fixed path, read-write while it is set up and read-only while tests run, so a cached
environment works in every fresh clone.

A shared environment is a way to poison every later task, so (see `prepare_environment`):
setup runs on a *source* the caller gives — a pristine export of the base commit, never a
workspace the model has touched — with Python's `-I` (the source is not on sys.path: a planted
`pip/` package cannot run); when the task's own edits change a lockfile, its environment is
keyed to that task alone; and a manifest (a digest of every file, link and mode) is recorded
at build time *outside* the environment and checked before each reuse, so an environment that
changed after it was built is rebuilt, never used.
"""

from __future__ import annotations

import ast
import asyncio
import configparser
import contextlib
import hashlib
import json
import logging
import os
import re
import shlex
import shutil
import stat
import tempfile
import time
import tomllib
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from tamma.agent.node_links import KEEP_NODE_MODULES, link_node_modules, unlink_node_modules
from tamma.agent.proxy import EgressProxy
from tamma.agent.safefs import (
    is_regular_beneath,
    mkdir_beneath,
    read_beneath,
    read_text_beneath,
    remove_beneath,
    write_beneath,
    write_file,
)
from tamma.agent.sandbox import (
    ENV_DIR,
    PROXY_SOCKET,
    CommandResult,
    Mounts,
    SandboxPolicy,
    resolve_backend,
    run_sandboxed,
)
from tamma.agent.testing import node_manager, python_members, python_tests, setup_from_guidance, uses_pytest
from tamma.errors import TOO_DEEP, SandboxError
from tamma.redact import Redactor

log = logging.getLogger(__name__)
MANIFEST = ".manifest"  # beside the environment (never inside it): <key>.manifest
_LOCKFILE_BYTES = 20_000_000
_FORWARD_PORT = 3128
_REQUIREMENTS = (
    "requirements.txt",
    "requirements-dev.txt",
    "requirements-test.txt",
    "requirements_dev.txt",
    "requirements_test.txt",
    "requirements/test.txt",
    "requirements/dev.txt",
)
_LOCKFILES = (
    "pyproject.toml",
    "setup.py",
    "setup.cfg",
    "tox.ini",
    "noxfile.py",
    *_REQUIREMENTS,
    "poetry.lock",
    "uv.lock",
    "go.mod",
    "go.sum",
    "Cargo.toml",
    "Cargo.lock",
    ".cargo/config.toml",
    "pdm.lock",
    "Pipfile",
    "Pipfile.lock",
    "package.json",
    "package-lock.json",
    "npm-shrinkwrap.json",
    "pnpm-lock.yaml",
    "yarn.lock",
    ".yarnrc.yml",
    ".tamma/setup.sh",
)


#: The export setup runs in has no .git, so a project whose version comes from git tags
#: (setuptools-scm, hatch-vcs, PDM's scm source, poetry-dynamic-versioning) cannot be installed:
#: "unable to detect version". Each is given, through its documented override, the version the
#: base commit's newest release tag names (scm_version_env), or this placeholder when there is
#: none; a PKG-INFO in the source (an sdist) is overridden too, which only changes the version
#: the environment reports.
SCM_PLACEHOLDER = "0.0.0"


@dataclass(frozen=True)
class Environment:
    """What a test run needs to know about the repository's environment."""

    env_dir: Path | None  # None: the repository needs none (or setup is off)
    command: str = ""
    cached: bool = False
    result: CommandResult | None = None  # the setup run, when one ran
    generated: tuple[str, ...] = ()  # files the install writes into the tree (kept in the environment)

    @property
    def failed(self) -> bool:
        return self.result is not None and self.result.exit_code != 0


# Package managers' caches live in the environment, never in the workspace; node_modules is moved
# there after install (the source setup ran in is thrown away) and linked into each workspace
# (tamma.agent.node_links).
# Node trusts its own CA list, not the system's: behind a proxy that inspects TLS (its CA added
# to the system's store, as companies do) corepack's downloads fail SELF_SIGNED_CERT_IN_CHAIN
# where pip, git and curl succeed. The system's bundle, where there is one, is added to Node's.
_SYSTEM_CAS = "/etc/ssl/certs/ca-certificates.crt"
_NODE_CACHES = (
    '{ export npm_config_cache="$VIRTUAL_ENV/npm-cache" COREPACK_HOME="$VIRTUAL_ENV/corepack"'
    ' COREPACK_ENABLE_DOWNLOAD_PROMPT=0 YARN_CACHE_FOLDER="$VIRTUAL_ENV/yarn-cache" YARN_ENABLE_GLOBAL_CACHE=false;'
    f" if [ -r {_SYSTEM_CAS} ]; then export NODE_EXTRA_CA_CERTS={_SYSTEM_CAS}; fi; }}"
)


def setup_command(root: Path, configured: str | None) -> str | None:
    """The shell command that prepares `root`'s environment, or None when it needs none."""
    if configured is not None:
        return configured.strip() or None
    if is_regular_beneath(root, ".tamma/setup.sh"):
        return "sh .tamma/setup.sh"
    given, _ = setup_from_guidance(root)
    if given:
        # the repository's own instructions, in a venv so `pip install` has somewhere to go
        venv = 'python3 -I -m venv "$VIRTUAL_ENV" && export PATH="$VIRTUAL_ENV/bin:$PATH"'
        return f"{venv} && {_NODE_CACHES} && {given} && {KEEP_NODE_MODULES}"
    steps = [step for step in (_python_setup(root), _node_setup(root), _go_setup(root), _cargo_setup(root)) if step]
    return " && ".join(steps) or None


#: where a Go module's dependencies live in the environment (GOMODCACHE), for setup and the runs
GO_MODULES = "go/mod"
#: where a Rust crate's registries and downloaded crates live in the environment (CARGO_HOME)
CARGO_HOME = "cargo"


def _cargo_setup(root: Path) -> str | None:
    """`cargo fetch` into the environment (CARGO_HOME) when the crate has dependencies and does
    not vendor them; the runs build from there offline. A private registry is named where Cargo
    reads it — the repository's `.cargo/config.toml` — and its host allowed in setup."""
    try:
        manifest = tomllib.loads(read_text_beneath(root, "Cargo.toml", 1_000_000) or "")
    except (tomllib.TOMLDecodeError, *TOO_DEEP):
        return None
    tables = [manifest.get(k) for k in ("dependencies", "dev-dependencies", "build-dependencies")]
    tables += [t.get(k) for t in manifest.get("target", {}).values() if isinstance(t, dict) for k in ("dependencies",)]
    has_deps = any(isinstance(t, dict) and t for t in tables) or bool(manifest.get("workspace", {}).get("members"))
    config = read_text_beneath(root, ".cargo/config.toml", 200_000) or read_text_beneath(root, ".cargo/config", 200_000)
    if not has_deps or "vendored-sources" in (config or ""):
        return None
    return f'mkdir -p "$VIRTUAL_ENV/{CARGO_HOME}" && CARGO_HOME="$VIRTUAL_ENV/{CARGO_HOME}" cargo fetch'


def _go_setup(root: Path) -> str | None:
    """`go mod download` into the environment when go.mod requires modules and nothing vendors
    them: the test runs have no network. GOPROXY, GOPRIVATE, GONOSUMDB and the like come from the
    setup's environment (agent.setup_secrets for a private proxy); the cache is kept writable so
    an environment can be removed, and no newer Go is ever fetched."""
    text = read_text_beneath(root, "go.mod", 1_000_000) or ""
    if not re.search(r"^require\b", text, re.M) or is_regular_beneath(root, "vendor/modules.txt"):
        return None
    return (
        f'mkdir -p "$VIRTUAL_ENV/{GO_MODULES}" && GOMODCACHE="$VIRTUAL_ENV/{GO_MODULES}" GOFLAGS=-modcacherw '
        "GOTOOLCHAIN=local go mod download"
    )


def _python_setup(root: Path) -> str | None:
    """A venv with the project (its test extras and dependency groups), its requirements files,
    its tox test deps, and pytest when the tests use it but nothing declares it."""
    # -I: the source directory is not on sys.path, so a `pip/` (or `venv/`) package in the
    # repository cannot stand in for the real one and run as the installer.
    venv, pip = 'python3 -I -m venv "$VIRTUAL_ENV"', "python -I -m pip install -q --disable-pip-version-check"
    args: list[str] = []
    declared = ""
    if is_regular_beneath(root, "pyproject.toml") or is_regular_beneath(root, "setup.py"):
        extras = _python_extras(root)
        args.append(f"-e {shlex.quote('.' + (f'[{extras}]' if extras else ''))}")
        declared += read_text_beneath(root, "pyproject.toml") or ""
        declared += read_text_beneath(root, "setup.cfg") or ""
        declared += read_text_beneath(root, "setup.py") or ""
    for member in python_members(root):  # a monorepo: each package with its test extras
        extras = _python_extras(root / member)
        args.append(shlex.quote(f"./{member}" + (f"[{extras}]" if extras else "")))
        args[-1] = f"-e {args[-1]}"
        declared += read_text_beneath(root, f"{member}/pyproject.toml") or ""
        declared += read_text_beneath(root, f"{member}/setup.py") or ""
    for name in _REQUIREMENTS:
        if is_regular_beneath(root, name):
            args.append(f"-r {name}")
            declared += read_text_beneath(root, name) or ""
    synced = _uv_sync(root) if not python_members(root) else None
    if synced is not None:  # the lock decides the project's and its groups' versions
        args = [a for a in args if not a.startswith("-e ")]
        declared += " ".join(_dependency_groups(root))
    extra = (_dependency_groups(root) if synced is None else []) + _hatch_pdm_deps(root) + _tox_deps(root)
    extra += _nox_deps(root) + _pipfile_deps(root)
    declared += " ".join(extra)
    if not args and not extra and not python_tests(root) and synced is None:
        return None
    if uses_pytest(root) and not re.search(r"(?<![\w-])pytest(?![\w-])", declared):
        extra.append("pytest")  # the tests import it; nothing declares it
    args += [shlex.quote(req) for req in dict.fromkeys(extra)]
    if synced is not None:
        then = f" && {pip} {' '.join(args)}" if args else ""
        return f"{venv} && {synced}{then}"
    if not args:
        return None  # plain unittest tests: the system Python runs them
    return f"{venv} && {_with_lock(root, f'{pip} ' + ' '.join(args))}"


# uv comes from the index into its own folder of the environment (not the venv the tests run
# in); its cache lives in the environment; it never downloads a Python, trusts the system's CAs
# (a TLS-inspecting proxy's) and leaves what else setup installs (--inexact).
_UV = (
    'python -I -m pip install -q --disable-pip-version-check --target "$VIRTUAL_ENV/.uv" uv'
    ' && UV_PROJECT_ENVIRONMENT="$VIRTUAL_ENV" UV_CACHE_DIR="$VIRTUAL_ENV/.uv-cache" UV_PYTHON_DOWNLOADS=never'
    ' UV_NATIVE_TLS=1 UV_NO_PROGRESS=1 "$VIRTUAL_ENV/.uv/bin/uv" sync --frozen --inexact'
)


def _uv_sync(root: Path) -> str | None:
    """`uv sync` from the repository's uv.lock — the versions it pins, the project editable, its
    test groups and extras — or None when there is no lock (or no pyproject) to sync from."""
    if not (is_regular_beneath(root, "uv.lock") and is_regular_beneath(root, "pyproject.toml")):
        return None
    data = _pyproject(root)
    groups = data.get("dependency-groups", {})
    flags = [f"--group {g}" for g in _TEST_GROUPS if g in groups]
    flags += [f"--extra {e}" for e in _python_extras(root).split(",") if e]
    return " ".join([_UV, *flags])


#: what a lock may pin: a distribution name and a version, nothing a shell or pip reads otherwise
_LOCK_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,98}[A-Za-z0-9])?$")
_LOCK_VERSION = re.compile(r"^[0-9][A-Za-z0-9.+!_-]{0,62}$")
#: a command line's one argument holds at most 128 KiB (Linux); the pins travel in it
_LOCK_PINS_BYTES = 64 * 1024
LOCK_CONSTRAINTS = ".lock-constraints.txt"  # in the environment


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _lock_pins(root: Path) -> tuple[str, list[str]]:
    """The versions the repository's Poetry, PDM or Pipenv lock pins (`name==version`), for pip's
    `-c`: pip reads none of those lockfiles and the tools that do (poetry, pdm, pipenv) would be
    one more installer to fetch and trust, while a pin list is all pip needs. Only registry
    packages (no git, path or URL sources), never the project's own name, and only names and
    versions that look like them — the lock is the repository's, hostile like the rest."""
    own: set[str] = set()
    for where in (root, *(root / m for m in python_members(root))):  # the project and its members
        data = _pyproject(where)
        for name in (data.get("project", {}).get("name"), data.get("tool", {}).get("poetry", {}).get("name")):
            if isinstance(name, str):
                own.add(_normalise(name))
    pins: dict[str, str] = {}
    lock = ""
    for name in ("poetry.lock", "pdm.lock"):
        text = read_text_beneath(root, name, _LOCKFILE_BYTES)
        if text is None:
            continue
        try:
            packages = tomllib.loads(text).get("package", [])
        except (tomllib.TOMLDecodeError, *TOO_DEEP):
            return name, []  # unreadable: installed without it (setup's output says nothing pinned)
        lock = name
        for pkg in packages if isinstance(packages, list) else []:
            if not isinstance(pkg, dict) or pkg.get("develop") or pkg.get("editable"):
                continue
            source = pkg.get("source")
            if isinstance(source, dict) and source.get("type") not in (None, "legacy"):
                continue  # git, directory, file, url: not a version pip can be held to
            if any(k in pkg for k in ("git", "path", "url")):  # PDM's forms of the same
                continue
            pins[str(pkg.get("name", ""))] = str(pkg.get("version", ""))
        break
    if not lock and (text := read_text_beneath(root, "Pipfile.lock", _LOCKFILE_BYTES)) is not None:
        lock = "Pipfile.lock"
        try:
            sections = json.loads(text)
        except (ValueError, *TOO_DEEP):
            return lock, []
        for section in ("default", "develop"):
            entries = sections.get(section, {}) if isinstance(sections, dict) else {}
            for pname, spec in entries.items() if isinstance(entries, dict) else []:
                version = spec.get("version", "") if isinstance(spec, dict) else ""
                if isinstance(version, str) and version.startswith("=="):
                    pins[str(pname)] = version[2:]
    kept = [
        f"{n}=={v}"
        for n, v in sorted(pins.items())
        if _LOCK_NAME.match(n) and _LOCK_VERSION.match(v) and _normalise(n) not in own
    ]
    if sum(len(k) + 3 for k in kept) > _LOCK_PINS_BYTES:
        log.warning("%s pins too many packages to carry into setup (%d); installing without them", lock, len(kept))
        return lock, []
    return lock, kept


def _with_lock(root: Path, install: str) -> str:
    """`install` (a pip install) held to the lock's versions, falling back to the plain install
    with a note when those cannot be installed here (a lock made for another Python)."""
    lock, pins = _lock_pins(root)
    if not pins:
        return install
    write = f'printf "%s\\n" {" ".join(shlex.quote(p) for p in pins)} > "$VIRTUAL_ENV/{LOCK_CONSTRAINTS}"'
    held = f'{install} -c "$VIRTUAL_ENV/{LOCK_CONSTRAINTS}"'
    note = shlex.quote(f"tamma: the versions {lock} pins do not install here; installing without them")
    return f"{write} && {{ {held} || {{ echo {note} >&2; {install}; }}; }}"


def _pipfile_deps(root: Path) -> list[str]:
    """A Pipenv project's packages and dev-packages, by name (Pipfile.lock pins their versions;
    Pipfile's own specifiers and git/path entries are Pipenv's, not pip's)."""
    try:
        data = tomllib.loads(read_text_beneath(root, "Pipfile", 1_000_000) or "")
    except (tomllib.TOMLDecodeError, *TOO_DEEP):
        return []
    names = [n for section in ("packages", "dev-packages") for n, spec in data.get(section, {}).items()]
    plain = [n for n in names if _LOCK_NAME.match(n)]
    entries = {**data.get("packages", {}), **data.get("dev-packages", {})}
    return [n for n in plain if not (isinstance(entries.get(n), dict) and {"git", "path", "file"} & set(entries[n]))]


def _hatch_pdm_deps(root: Path) -> list[str]:
    """Test requirements declared for Hatch's environments (`default`, `test`, `tests`,
    `hatch-test`: dependencies and extra-dependencies) and PDM's `[tool.pdm.dev-dependencies]`
    test/dev groups (PDM's newer projects use PEP 735 groups, read above)."""
    tool = _pyproject(root).get("tool", {})
    found: list[str] = []
    envs = tool.get("hatch", {}).get("envs", {})
    for name in _HATCH_TEST_ENVS:
        env = envs.get(name, {})
        for key in ("dependencies", "extra-dependencies"):
            found += [d for d in env.get(key, []) if isinstance(d, str)]
    pdm = tool.get("pdm", {}).get("dev-dependencies", {})
    for name in _TEST_GROUPS:
        found += [d for d in pdm.get(name, []) if isinstance(d, str) and not d.startswith("-e")]
    # only plain requirements: hatch's context formatting ({root:uri}) and local paths are not pip's
    return [d for d in found if _PLAIN_REQUIREMENT.match(d)]


_TEST_GROUPS = ("test", "tests", "testing", "dev")


def _pyproject(root: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(read_text_beneath(root, "pyproject.toml") or "")
    except (tomllib.TOMLDecodeError, *TOO_DEEP):
        return {}


_HATCH_TEST_ENVS = ("default", "test", "tests", "hatch-test")
#: a requirement pip takes as it is ("name", "name[extra]>=1", "name; marker"): no flags, paths,
#: URLs or a tool's own substitutions ({root:uri}, ${PROJECT_ROOT})
_PLAIN_REQUIREMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[^\]]*\])?\s*([<>=!~;].*)?$")


def _python_extras(root: Path) -> str:
    """The test extras a project declares (test, tests, testing, dev) — in its pyproject, its
    setup.cfg or its setup.py — and those its Hatch test environments install (`features`),
    comma-joined."""
    data = _pyproject(root)
    declared = {*data.get("project", {}).get("optional-dependencies", {}), *_setuptools_extras(root)}
    envs = data.get("tool", {}).get("hatch", {}).get("envs", {})
    features = [f for name in _HATCH_TEST_ENVS for f in envs.get(name, {}).get("features", []) if isinstance(f, str)]
    return ",".join(e for e in dict.fromkeys([*_TEST_GROUPS, *features]) if e in declared)


def _setuptools_extras(root: Path) -> set[str]:
    """The extras setup.cfg (`[options.extras_require]`) or setup.py (`extras_require=` a dict
    literal, or a module-level name bound to one) declares. setup.py is read with `ast`, never
    run: it is the repository's code."""
    names: set[str] = set()
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    with contextlib.suppress(configparser.Error):
        parser.read_string(read_text_beneath(root, "setup.cfg", 500_000) or "")
        if parser.has_section("options.extras_require"):
            names |= set(parser.options("options.extras_require"))
    try:
        tree = ast.parse(read_text_beneath(root, "setup.py", 500_000) or "")
    except (SyntaxError, ValueError, *TOO_DEEP):
        return names
    dicts = {
        t.id: node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict)
        for t in node.targets
        if isinstance(t, ast.Name)
    }
    for call in ast.walk(tree):
        if not isinstance(call, ast.Call):
            continue
        for kw in call.keywords:
            value = dicts.get(kw.value.id) if isinstance(kw.value, ast.Name) else kw.value
            if kw.arg == "extras_require" and isinstance(value, ast.Dict):
                names |= {k.value for k in value.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
    return names


def _dependency_groups(root: Path) -> list[str]:
    """Requirements of the test groups: PEP 735 `[dependency-groups]` (uv, pdm, hatch) with
    their `include-group`s, and Poetry's test/dev groups (names only: Poetry's version syntax
    is not pip's)."""
    data = _pyproject(root)
    groups = data.get("dependency-groups", {})
    found: list[str] = []

    def add(name: str, depth: int = 0) -> None:
        for item in groups.get(name, []) if depth < 5 else []:
            if isinstance(item, str):
                found.append(item)
            elif isinstance(item, dict) and isinstance(item.get("include-group"), str):
                add(item["include-group"], depth + 1)

    for name in _TEST_GROUPS:
        add(name)
    poetry = data.get("tool", {}).get("poetry", {})
    tables = [poetry.get("dev-dependencies", {})]
    tables += [poetry.get("group", {}).get(g, {}).get("dependencies", {}) for g in _TEST_GROUPS]
    for table in tables:
        found += [name for name in table if isinstance(name, str) and name != "python"]
    return found


def _nox_deps(root: Path) -> list[str]:
    """The requirements noxfile.py's test sessions install: string literals given to
    `session.install(...)` in functions whose name has "test" in it. Read with `ast`, never run
    (it is the repository's code); flags, paths and `-r files` are left out."""
    text = read_text_beneath(root, "noxfile.py", 500_000)
    if not text:
        return []
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, *TOO_DEEP):
        return []
    # module-level lists of literals (`TEST_DEPS = ["pytest", "freezegun"]`), which a session
    # installs as `session.install(*TEST_DEPS)`; anything computed is not followed
    lists: dict[str, list[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.List | ast.Tuple):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            items = [e.value for e in node.value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            lists.update({t.id: items for t in targets if isinstance(t, ast.Name)})

    def strings(arg: ast.expr) -> list[str]:
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            return [arg.value]
        if isinstance(arg, ast.Starred) and isinstance(arg.value, ast.Name):
            return lists.get(arg.value.id, [])
        return []

    found: list[str] = []
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef) or "test" not in fn.name.lower():
            continue
        for call in ast.walk(fn):
            if (
                isinstance(call, ast.Call)
                and isinstance(call.func, ast.Attribute)
                and call.func.attr == "install"
                and not (call.args and isinstance(call.args[0], ast.Constant) and call.args[0].value in ("-r", "-e"))
            ):
                found += [text for arg in call.args for text in strings(arg)]
    return [d for d in found if _PLAIN_REQUIREMENT.match(d)]


def _tox_deps(root: Path) -> list[str]:
    """The `deps` of tox.ini's [testenv] (requirement lines only; no substitutions)."""
    text = read_text_beneath(root, "tox.ini", 200_000) or ""
    m = re.search(r"^\[testenv\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    deps = re.search(r"^deps\s*=\s*(.*?)(?=^\S|\Z)", m.group(1), re.M | re.S) if m else None
    if deps is None:
        return []
    lines = [line.split("#")[0].strip() for line in deps.group(1).splitlines()]
    return [line for line in lines if _PLAIN_REQUIREMENT.match(line)]


def _node_setup(root: Path) -> str | None:
    """Install with the project's package manager (corepack supplies pnpm and yarn), then move
    node_modules into the environment: the export setup runs in is thrown away, and each test
    run links it into the fresh workspace (`run_in_environment`)."""
    if not is_regular_beneath(root, "package.json"):
        return None
    manager = node_manager(root)
    if manager == "pnpm":
        store = '--config.store-dir="$VIRTUAL_ENV/pnpm-store"'
        install = f"corepack pnpm install --frozen-lockfile --config.node-linker=hoisted {store}"
    elif manager == "yarn":
        berry = is_regular_beneath(root, ".yarnrc.yml")
        # Yarn 2+ installs Plug'n'Play by default: a .pnp.cjs in the source, thrown away with it;
        # node_modules is what survives into the environment
        install = (
            "YARN_NODE_LINKER=node-modules corepack yarn install --immutable"
            if berry
            else "corepack yarn install --frozen-lockfile --non-interactive"
        )
    elif is_regular_beneath(root, "package-lock.json") or is_regular_beneath(root, "npm-shrinkwrap.json"):
        install = "npm ci --no-audit --no-fund"
    else:
        install = "npm install --no-audit --no-fund --no-package-lock"
    return f'{_NODE_CACHES} && mkdir -p "$VIRTUAL_ENV" && {install} && {KEEP_NODE_MODULES}'


def lockfile_digest(root: Path) -> str:
    """A digest of the files that decide what setup installs (read without following links)."""
    h = hashlib.sha256()
    for name in _LOCKFILES:
        try:
            data = read_beneath(root, name, _LOCKFILE_BYTES)
        except OSError:
            data = b"<unsafe>"  # a link or a FIFO where a lockfile goes: a key of its own
        if data is not None:
            h.update(name.encode() + b"\0" + data + b"\0")
    return h.hexdigest()


def environment_key(
    root: Path,
    repo_key: str,
    command: str,
    policy: SandboxPolicy,
    backend: str,
    scope: str = "",
    version: str = SCM_PLACEHOLDER,
) -> str:
    """The cache key: repository, command, backend (and image), lockfile contents, `scope` (a
    task's own environment, built from its edited lockfiles, is keyed to that task) and the
    version a project versioned from git tags is installed as."""
    h = hashlib.sha256()
    for part in (repo_key, command, backend, policy.image if backend == "container" else "", scope):
        h.update(part.encode() + b"\0")
    if version != SCM_PLACEHOLDER:  # keys made before versions were read stay as they were
        h.update(version.encode() + b"\0")
    h.update(lockfile_digest(root).encode())
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", repo_key).strip("_")[-40:]
    return f"{slug}-{'task-' if scope else ''}{h.hexdigest()[:16]}"


def tree_digest(root: Path) -> str:
    """Every path under `root` with its type, mode and content (a link: its target), hashed;
    links are recorded, never followed. What the environment was when it was built."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        here = Path(dirpath)
        for name in sorted([*dirnames, *filenames]):
            p = here / name
            st = p.lstat()
            rel = str(p.relative_to(root)).encode()
            h.update(rel + b"\0" + str(st.st_mode).encode() + b"\0")
            if stat.S_ISLNK(st.st_mode):
                h.update(os.readlink(p).encode(errors="surrogateescape"))
            elif stat.S_ISREG(st.st_mode):
                with open(p, "rb", opener=lambda f, fl: os.open(f, fl | os.O_NOFOLLOW)) as fh:
                    for chunk in iter(lambda: fh.read(1 << 20), b""):
                        h.update(chunk)
            h.update(b"\0")
    return h.hexdigest()


def _manifest(final: Path) -> Path:
    return final.with_name(final.name + MANIFEST)


async def _verified(final: Path) -> bool:
    """True when `final` exists and is exactly what was built (its manifest matches)."""
    manifest = _manifest(final)
    if not final.is_dir() or final.is_symlink() or not manifest.is_file():
        return False
    recorded = manifest.read_text(encoding="utf-8").strip()
    actual = await asyncio.to_thread(tree_digest, final)
    if actual != recorded:
        log.warning("environment %s changed after it was built (manifest mismatch): rebuilding it", final.name)
        return False
    return True


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if path.is_symlink() or path.is_file():
            path.unlink()
    shutil.rmtree(path, ignore_errors=True)


async def prepare_environment(
    source: Path,
    repo_key: str,
    configured: str | None,
    envs_dir: Path,
    policy: SandboxPolicy,
    redactor: Redactor,
    allow_hosts: list[str],
    scope: str = "",
    secrets: Mapping[str, str] | None = None,
    version: str = SCM_PLACEHOLDER,
) -> Environment:
    """Reuse the verified cached environment for this repository and lockfiles, or set one up.

    `source` is what setup runs in: the caller passes a pristine export of the base commit
    (shared, `scope` empty), or — when the task's own edits changed a lockfile — a copy of
    its tree with `scope` naming the task, so its environment is never reused by another."""
    command = setup_command(source, configured)
    if command is None:
        return Environment(env_dir=None)
    generated = tuple(generated_files(source))
    backend = resolve_backend(policy)
    final = envs_dir / environment_key(source, repo_key, command, policy, backend, scope, version)
    if await _verified(final):
        return Environment(env_dir=final, command=command, cached=True, generated=generated)
    envs_dir.mkdir(parents=True, exist_ok=True)
    envs_dir.chmod(0o700)
    _remove(_manifest(final))
    # Isolating backends show the environment at one fixed path, so it may be built aside and
    # renamed into place (two workers racing both succeed; one result is kept). Without a
    # sandbox the venv's own paths are real, so it is built where it stays.
    if backend == "none" or final.exists() or final.is_symlink():
        _remove(final)
    building = final if backend == "none" else envs_dir / f".build-{uuid.uuid4().hex[:12]}"
    building.mkdir(parents=True)
    result = await _run_setup(source, command, building, backend, policy, redactor, allow_hosts, secrets or {}, version)
    if result.exit_code != 0:
        _remove(building)
        return Environment(env_dir=None, command=command, result=result)
    await asyncio.to_thread(_keep_generated, source, building, generated)
    digest = await asyncio.to_thread(tree_digest, building)
    if building != final:
        try:
            building.rename(final)
        except OSError:
            _remove(building)  # another worker put its build in place first: check that one
            if await _verified(final):
                return Environment(env_dir=final, command=command, cached=True, generated=generated)
            raise SandboxError(f"environment {final.name} is being built by another worker") from None
    pending = envs_dir / f".manifest-{uuid.uuid4().hex[:12]}"
    write_file(pending, digest.encode() + b"\n", exclusive=True)
    os.replace(pending, _manifest(final))
    return Environment(env_dir=final, command=command, result=result, generated=generated)


async def _run_setup(
    root: Path,
    command: str,
    env_dir: Path,
    backend: str,
    policy: SandboxPolicy,
    redactor: Redactor,
    allow_hosts: list[str],
    secrets: Mapping[str, str],
    version: str = SCM_PLACEHOLDER,
) -> CommandResult:
    """The setup command in the sandbox, its only way out the allowlisting proxy. `secrets`
    (agent.setup_secrets: a private index URL, a registry token) reach this command only, as
    variables read from a file shown read-only (never on a command line, where `ps` shows it);
    the host of a URL among them joins the allowlist."""
    forward = Path(__file__).with_name("sandbox_forward.py")
    # AF_UNIX paths are short (108 bytes): the socket lives in its own short temp dir.
    sock_dir = Path(tempfile.mkdtemp(prefix="tamma-px-", dir="/tmp"))
    sock_dir.chmod(0o755)
    socket_path = sock_dir / "proxy.sock"
    inside_sock, inside_fwd = (
        (PROXY_SOCKET, "/tamma/forward.py") if backend != "none" else (str(socket_path), str(forward))
    )
    files: list[tuple[Path, str]] = [(forward, "/tamma/forward.py")] if backend != "none" else []
    load = ""
    if secrets:
        # its own 0700 folder, the file 0600: the sandbox's user maps to this worker's, nobody else's
        secret_dir = Path(tempfile.mkdtemp(prefix="tamma-se-", dir="/tmp"))
        env_file = secret_dir / "setup.env"
        write_file(env_file, "".join(f"export {k}={shlex.quote(v)}\n" for k, v in secrets.items()).encode())
        inside_env = "/tamma/setup.env" if backend != "none" else str(env_file)
        files.append((env_file, "/tamma/setup.env"))
        load = f". {inside_env}; "
        allow_hosts = [*allow_hosts, *_url_hosts(secrets.values())]
    ready = "/tmp/.tamma-forward-ready"
    proxy_url = f"http://127.0.0.1:{_FORWARD_PORT}"
    wrapped = (
        f"python3 {inside_fwd} {_FORWARD_PORT} {inside_sock} {ready} & fw=$!; "
        f"i=0; while [ ! -e {ready} ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; "
        f"( {load}{command} ); rc=$?; kill $fw 2>/dev/null; exit $rc"
    )
    env = {
        "VIRTUAL_ENV": ENV_DIR if backend != "none" else str(env_dir),
        "HTTP_PROXY": proxy_url,
        "HTTPS_PROXY": proxy_url,
        "http_proxy": proxy_url,
        "https_proxy": proxy_url,
        "NO_PROXY": "",
        "npm_config_proxy": proxy_url,
        "npm_config_https_proxy": proxy_url,
        # Yarn 2+ reads its own proxy settings, not HTTP(S)_PROXY
        "YARN_HTTP_PROXY": proxy_url,
        "YARN_HTTPS_PROXY": proxy_url,
        **scm_version_env(version),
    }
    mounts = Mounts(
        workspace=root,
        env_dir=env_dir,
        env_writable=True,
        proxy_socket=socket_path,
        files=tuple(files) if backend != "none" else (),
        hidden=tuple(policy.hide_paths),
    )
    try:
        async with EgressProxy(socket_path, allow_hosts) as proxy:
            result = await run_sandboxed(
                wrapped, mounts, policy.model_copy(update={"network": False}), redactor, extra_env=env
            )
    finally:
        shutil.rmtree(sock_dir, ignore_errors=True)
        if secrets:
            shutil.rmtree(secret_dir, ignore_errors=True)
    note = ""
    if proxy.refused:
        hosts = ", ".join(sorted(set(proxy.refused)))
        note = f"\n[tamma] setup egress refused (not in agent.setup_allow_hosts): {hosts}\n"
    header = f"[tamma] setup: {command}\n"
    return result.model_copy(update={"output": header + result.output + note})


_GENERATED = ".tamma-generated"  # in an environment: the files setup wrote into the tree


def generated_files(root: Path) -> list[str]:
    """The files a project's install writes into its own tree and its code may import: the
    version file of setuptools-scm (`write_to`, `version_file`), hatch-vcs (`[tool.hatch.build.
    hooks.vcs] version-file`) and PDM (`[tool.pdm.version] write_to`, under its `package-dir`).
    Setup runs on an export that is thrown away, so each test run is given them again. Only
    plain relative paths: nothing outside the tree, nothing in `.git` or `.tamma`."""
    tool = _pyproject(root).get("tool", {})
    scm = tool.get("setuptools_scm", {})
    found: list[object] = [scm.get("write_to"), scm.get("version_file")]
    found.append(tool.get("hatch", {}).get("build", {}).get("hooks", {}).get("vcs", {}).get("version-file"))
    pdm = tool.get("pdm", {})
    write_to = pdm.get("version", {}).get("write_to")
    package_dir = pdm.get("build", {}).get("package-dir")
    if isinstance(write_to, str):
        nested = isinstance(package_dir, str) and package_dir.strip(".")
        found.append(f"{package_dir}/{write_to}" if nested else write_to)
    return [p for p in dict.fromkeys(found) if isinstance(p, str) and _plain_relative(p)]


def _plain_relative(path: str) -> bool:
    parts = PurePosixPath(path).parts
    return (
        0 < len(path) <= 300
        and not PurePosixPath(path).is_absolute()
        and "\\" not in path
        and all(p not in ("", ".", "..") and not p.startswith(".git") and p != ".tamma" for p in parts)
    )


def _keep_generated(source: Path, env_dir: Path, paths: tuple[str, ...]) -> None:
    """Copy what setup generated in the source into the environment (its own folder, made
    afresh: setup could have planted one)."""
    with contextlib.suppress(OSError):
        remove_beneath(env_dir, _GENERATED)
    if not paths or not mkdir_beneath(env_dir, _GENERATED):
        return
    store = env_dir / _GENERATED
    for path in paths:
        try:
            data = read_beneath(source, path, 1_000_000)
        except OSError:
            continue  # a link or a FIFO where the file should be: not kept
        if data is None:
            continue
        parts = PurePosixPath(path).parts
        for i in range(1, len(parts)):
            mkdir_beneath(store, "/".join(parts[:i]))
        write_beneath(store, path, data)


def _place_generated(root: Path, environment: Environment) -> list[str]:
    """The kept generated files into a workspace that lacks them (its folders reached through no
    link; an existing file is left as it is); the ones placed, to take away after the run."""
    if environment.env_dir is None:
        return []
    placed = []
    for path in environment.generated:
        try:
            data = read_beneath(environment.env_dir / _GENERATED, path, 1_000_000)
        except OSError:
            continue
        if data is not None and write_beneath(root, path, data):
            placed.append(path)
    return placed


def scm_version_env(version: str) -> dict[str, str]:
    """`version`: the release the base commit's newest tag names (Workspace.version_tag), else
    the placeholder — 0.0.0 would clash with a test runner that requires the project itself
    (pytest needs pluggy and iniconfig at some minimum version)."""
    return {
        "SETUPTOOLS_SCM_PRETEND_VERSION": version,
        "PDM_BUILD_SCM_VERSION": version,
        "POETRY_DYNAMIC_VERSIONING_BYPASS": version,
    }


def _url_hosts(values: Iterable[str]) -> list[str]:
    hosts = []
    for value in values:
        with contextlib.suppress(ValueError):
            parsed = urlsplit(value.strip())
            if parsed.scheme in ("http", "https") and parsed.hostname:
                # a registry on its own port is allowed that port alone
                hosts.append(f"{parsed.hostname}:{parsed.port}" if parsed.port else parsed.hostname)
    return hosts


async def run_in_environment(
    command: str,
    root: Path,
    environment: Environment,
    policy: SandboxPolicy,
    redactor: Redactor,
) -> CommandResult:
    """Run the tests (or any command) with the repository's environment mounted read-only."""
    if environment.failed:
        assert environment.result is not None
        return environment.result.model_copy(
            update={"output": environment.result.output + "\n[tamma] setup failed: tests were not run\n"}
        )
    mounts = Mounts(workspace=root, env_dir=environment.env_dir, hidden=tuple(policy.hide_paths))
    inside = ENV_DIR if resolve_backend(policy) != "none" else str(environment.env_dir)
    made = link_node_modules(root, environment.env_dir, inside)
    placed = _place_generated(root, environment)
    # pytest (however it is started: directly, tox, make) prints where each thread is when one
    # test runs past a quarter of the run's limit, so a run killed for hanging names the test
    # (tamma.agent.results.hung_test); a slow test that finishes only adds the dump to the output
    extra: dict[str, str] = {"PYTEST_ADDOPTS": f"-o faulthandler_timeout={max(5, int(policy.timeout_s // 4))}"}
    if environment.env_dir is not None and (environment.env_dir / GO_MODULES).is_dir():
        # the modules setup downloaded, read-only; anything missing fails at once, never a fetch
        extra |= {"GOMODCACHE": f"{inside}/{GO_MODULES}", "GOPROXY": "off", "GOTOOLCHAIN": "local"}
    if environment.env_dir is not None and (environment.env_dir / CARGO_HOME).is_dir():
        extra |= {"CARGO_HOME": f"{inside}/{CARGO_HOME}", "CARGO_NET_OFFLINE": "true"}
    try:
        return await run_sandboxed(command, mounts, policy, redactor, extra_env=extra)
    finally:
        unlink_node_modules(root, made)
        for path in placed:
            with contextlib.suppress(OSError):
                remove_beneath(root, path)


async def sweep_builds(envs_dir: Path, older_than_s: float = 3600) -> None:
    """Remove half-built environments that a killed worker left behind."""

    def sweep() -> None:
        if not envs_dir.is_dir():
            return
        for p in [*envs_dir.glob(".build-*"), *envs_dir.glob(".manifest-*")]:
            with contextlib.suppress(OSError):
                if time.time() - p.stat().st_mtime > older_than_s:
                    shutil.rmtree(p, ignore_errors=True)

    await asyncio.to_thread(sweep)
