"""Reading settings: which files, in which format, layered how, and errors that say where.

Sources, strongest first:

1. arguments to ``load_settings`` (the CLI's flags);
2. ``TAMMA_*`` environment variables (``__`` separates levels: ``TAMMA_TEMPORAL__ADDRESS``), and
   the vendors' own ``ANTHROPIC_API_KEY``, ``OPENAI_API_KEY``, ``GITHUB_TOKEN``... when the TAMMA_
   one is unset;
3. ``<base>.<env>.<ext>`` beside the base file, when ``TAMMA_ENV`` names an environment;
4. the base file: ``--config``, ``TAMMA_CONFIG``, ``./tamma.{toml,yaml,yml,json}`` or
   ``<user config dir>/tamma/config.{toml,yaml,yml,json}``;
5. the defaults in ``tamma.config.schema``.

Nothing is ignored: an unknown key at any depth, in a file or as a ``TAMMA_*`` variable, is an
error naming the key, where it was found and the nearest known key.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import re
import stat
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs
import yaml
from pydantic import BaseModel, SecretStr, ValidationError

from tamma.config.schema import FILE_VALUES, Settings
from tamma.config.secrets import is_reference
from tamma.errors import ConfigError

log = logging.getLogger("tamma.config")

FORMATS = (".toml", ".yaml", ".yml", ".json")
META_VARIABLES = {"TAMMA_CONFIG", "TAMMA_ENV"}  # say where settings are, are not settings
# The vendors' variables, honoured when the TAMMA_* ones are unset, so a shell setup just works.
VENDOR_VARIABLES = {
    "ANTHROPIC_API_KEY": ("llm", "anthropic_api_key"),
    "ANTHROPIC_BASE_URL": ("llm", "anthropic_base_url"),
    "OPENAI_API_KEY": ("llm", "openai_api_key"),
    "OPENAI_BASE_URL": ("llm", "openai_base_url"),
    "OTEL_EXPORTER_OTLP_ENDPOINT": ("telemetry", "otlp_endpoint"),
    "OTEL_SERVICE_NAME": ("telemetry", "service_name"),
    "GITHUB_TOKEN": ("github", "token"),
    "GITLAB_TOKEN": ("gitlab", "token"),
}


@dataclass
class Layers:
    """Every source's own values, for validation errors and `tamma config show --sources`."""

    base: Path | None = None
    env_name: str | None = None
    env_file: Path | None = None
    base_values: dict[str, Any] = field(default_factory=dict)
    env_file_values: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    variables: dict[str, str] = field(default_factory=dict)  # dotted path -> the variable that set it
    arguments: dict[str, Any] = field(default_factory=dict)

    @property
    def files(self) -> list[Path]:
        return [p for p in (self.base, self.env_file) if p is not None]

    def merged_files(self) -> dict[str, Any]:
        return deep_merge(self.base_values, self.env_file_values)

    def source_of(self, dotted: str) -> str:
        keys = dotted.split(".")
        if _has(self.arguments, keys):
            return "command line"
        if _has(self.environment, keys):
            return f"environment {self.variables.get(dotted) or _variable_prefix(self.variables, dotted)}"
        for path, values in ((self.env_file, self.env_file_values), (self.base, self.base_values)):
            if path is not None and _has(values, keys):
                line = line_of(path, keys)
                return f"{path}:{line}" if line else str(path)
        return "default"


# ---- finding and reading files ------------------------------------------------------------------


def find_config_file(explicit: Path | None = None) -> Path | None:
    """The base file: --config, TAMMA_CONFIG, ./tamma.<ext>, then <user config dir>/config.<ext>."""
    if explicit is not None:
        return explicit
    env = os.environ.get("TAMMA_CONFIG")
    if env:
        return Path(env)
    for folder, stem in ((Path("."), "tamma"), (Path(platformdirs.user_config_dir("tamma")), "config")):
        found = [folder / f"{stem}{ext}" for ext in FORMATS if (folder / f"{stem}{ext}").is_file()]
        if len(found) > 1:
            raise ConfigError(f"{' and '.join(map(str, found))} both exist; keep one config file there")
        if found:
            return found[0]
    return None


def env_file_for(base: Path, env_name: str) -> Path:
    """`tamma.toml` + production -> `tamma.production.toml` (same folder, same format)."""
    return base.with_name(f"{base.stem}.{env_name}{base.suffix}")


def read_config_file(path: Path) -> dict[str, Any]:
    """A config file's values; ConfigError naming the file, the line and the fix on bad input."""
    if path.suffix not in FORMATS:
        raise ConfigError(f"config file {path} has an unknown format; name it .toml, .yaml, .yml or .json")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; create it or unset TAMMA_CONFIG") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read ({exc}); check its permissions") from None
    try:
        if path.suffix == ".toml":
            doc: Any = tomllib.loads(text)
        elif path.suffix == ".json":
            doc = json.loads(text) if text.strip() else {}
        else:
            doc = yaml.safe_load(text) or {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML ({exc}); fix the syntax") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not valid JSON (line {exc.lineno}: {exc.msg}); fix the syntax"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"config file {path} is not valid YAML ({where}{problem}); fix the syntax") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, not a {type(doc).__name__}")
    return doc


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


# ---- the environment ----------------------------------------------------------------------------


def environment_values(overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """(TAMMA_* and vendor variables as nested values, dotted path -> variable name); raises
    ConfigError for a TAMMA_* variable that names no setting."""
    nested: dict[str, Any] = {}
    names: dict[str, str] = {}
    for var in sorted(os.environ):
        if not var.startswith("TAMMA_") or var in META_VARIABLES:
            continue
        keys = var[len("TAMMA_") :].lower().split("__")
        problem = unknown_key(keys)
        if problem:
            raise ConfigError(f"environment variable {var}: {problem}; fix its name or unset it")
        _put(nested, keys, os.environ[var])
        names[".".join(keys)] = var
    vendor = vendor_values(overrides)
    for var, (section, key) in VENDOR_VARIABLES.items():
        if _has(vendor, [section, key]):
            _put(nested, [section, key], os.environ[var])
            names[f"{section}.{key}"] = var
    return nested, names


def _put(target: dict[str, Any], keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        target = target.setdefault(key, {})
    target[keys[-1]] = value


_MISSING = object()


def _get(values: dict[str, Any], keys: list[str]) -> Any:
    """The value at `keys` in nested dicts, or _MISSING."""
    node: Any = values
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return _MISSING
        node = node[key]
    return node


def _has(values: dict[str, Any], keys: list[str]) -> bool:
    return _get(values, keys) is not _MISSING


def _variable_prefix(names: dict[str, str], dotted: str) -> str:
    return next((var for path, var in names.items() if dotted.startswith(path + ".")), "")


# ---- the schema, walked -------------------------------------------------------------------------


def _model_in(annotation: Any) -> type[BaseModel] | None:
    for arg in (annotation, *typing.get_args(annotation)):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _mapping_value(annotation: Any) -> Any | None:
    """For dict[K, V] (optionally inside a union): V; else None."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return next((v for a in typing.get_args(annotation) if (v := _mapping_value(a)) is not None), None)
    return typing.get_args(annotation)[1] if origin is dict else None


def _is_mapping(annotation: Any) -> bool:
    return _mapping_value(annotation) is not None


def unknown_key(keys: list[str]) -> str:
    """'' when `keys` is a path the schema knows, else why not with the nearest known key."""
    model: type[BaseModel] | None = Settings
    i = 0
    while i < len(keys):
        if model is None:
            return f"{'.'.join(keys[:i])} has no sub-keys"
        fields = model.model_fields
        key = keys[i]
        if key not in fields:
            near = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.6)
            hint = f"did you mean {near[0]}?" if near else f"known keys: {', '.join(fields)}"
            return f"{'.'.join(keys[: i + 1])}: unknown key; {hint}"
        annotation = fields[key].annotation
        value_type = _mapping_value(annotation)
        if value_type is not None:
            i += 1  # the next key is the mapping's own (a step or a model name)
            model = _model_in(value_type)
        else:
            model = _model_in(annotation)
        i += 1
    return ""


def secret_paths(model: type[BaseModel] = Settings, prefix: str = "") -> set[str]:
    """Dotted paths of the secret settings, from the schema."""
    found: set[str] = set()
    for name, info in model.model_fields.items():
        dotted = f"{prefix}{name}"
        if "SecretStr" in str(info.annotation):
            found.add(dotted)
        inner = _model_in(info.annotation)
        if inner is not None and not _is_mapping(info.annotation):
            found |= secret_paths(inner, dotted + ".")
    return found


# ---- loading ------------------------------------------------------------------------------------


def read_layers(config_file: Path | None = None, **overrides: Any) -> Layers:
    layers = Layers(arguments=dict(overrides))
    layers.base = find_config_file(config_file)
    layers.env_name = os.environ.get("TAMMA_ENV") or None
    if layers.base is not None:
        layers.base_values = read_config_file(layers.base)
        if layers.env_name:
            if not re.fullmatch(r"[A-Za-z0-9_-]+", layers.env_name):
                raise ConfigError(f"TAMMA_ENV={layers.env_name!r} must be a plain name such as production")
            layers.env_file = env_file_for(layers.base, layers.env_name)
            if not layers.env_file.is_file():
                raise ConfigError(
                    f"TAMMA_ENV={layers.env_name} but {layers.env_file} does not exist; create it or unset TAMMA_ENV"
                )
            layers.env_file_values = read_config_file(layers.env_file)
    elif layers.env_name:
        raise ConfigError(f"TAMMA_ENV={layers.env_name} is set but there is no base config file to layer it on")
    layers.environment, layers.variables = environment_values(overrides)
    return layers


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Read settings once at an entry point; raise ConfigError naming the key, where it was
    found and the fix on bad input."""
    layers = read_layers(config_file, **overrides)
    for path, values in ((layers.base, layers.base_values), (layers.env_file, layers.env_file_values)):
        if path is not None:
            warn_if_exposed(path, values)
    arguments = deep_merge(vendor_values(overrides), overrides)
    token = FILE_VALUES.set(layers.merged_files())
    try:
        return Settings(**arguments)
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc, layers)) from None
    finally:
        FILE_VALUES.reset(token)


def vendor_values(overrides: dict[str, Any]) -> dict[str, Any]:
    """The vendors' variables as settings (pydantic reads the TAMMA_* ones itself)."""
    out: dict[str, Any] = {}
    for var, keys in VENDOR_VARIABLES.items():
        tamma_var = "TAMMA_" + "__".join(keys).upper()
        if os.environ.get(var) and not os.environ.get(tamma_var) and keys[0] not in overrides:
            _put(out, list(keys), os.environ[var])
    return out


def describe_errors(exc: ValidationError, layers: Layers) -> str:
    lines: list[str] = []
    for err in exc.errors()[:5]:
        keys = [str(p) for p in err["loc"]]
        dotted = ".".join(keys)
        if err["type"] == "extra_forbidden":
            problem = unknown_key(keys) or f"{dotted}: unknown key"
        else:
            message = str(err["msg"]).removeprefix("Value error, ")
            problem = f"{dotted}: {message}" if dotted else message
        where = layers.source_of(dotted) if dotted else ""
        lines.append(problem + (f" (in {where})" if where and where != "default" else ""))
    more = len(exc.errors()) - 5
    if more > 0:
        lines.append(f"... and {more} more")
    return "invalid settings: " + "; ".join(lines)


_WARNED: set[tuple[Path, tuple[str, ...]]] = set()  # once per process and file


def warn_if_exposed(path: Path, values: dict[str, Any]) -> list[str]:
    """Warn when a file that holds secrets (not references to them) is readable by others."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return []
    if not mode & (stat.S_IRWXG | stat.S_IRWXO):
        return []
    held = [p for p in sorted(secret_paths()) if _holds_secret(values, p.split("."))]
    if held and (path, tuple(held)) not in _WARNED:
        _WARNED.add((path, tuple(held)))
        log.warning(
            "config file %s holds secrets (%s) and is readable by group or others: chmod 600 %s",
            path,
            ", ".join(held),
            path,
        )
    return held


def _holds_secret(values: dict[str, Any], keys: list[str]) -> bool:
    node = _get(values, keys)
    if node is _MISSING:
        return False
    items = node if isinstance(node, list) else [node]
    return any(item and not is_reference(item) for item in items)


def line_of(path: Path, keys: list[str]) -> int | None:
    """The line of `keys` in a TOML, YAML or JSON file, found by reading it as text (the parsers
    keep no positions): the first line whose table/indentation path and key match."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    dotted = ".".join(keys)
    if path.suffix == ".toml":
        table = ""
        for n, line in enumerate(lines, 1):
            header = re.match(r"\s*\[+\s*([^\]]+?)\s*\]+", line)
            if header:
                table = header.group(1).replace('"', "")
                if table == dotted:
                    return n
                continue
            key = re.match(r"\s*([A-Za-z0-9_.\"-]+)\s*=", line)
            if key and ".".join(p for p in (table, key.group(1).replace('"', "")) if p) == dotted:
                return n
        return None
    stack: list[tuple[int, str]] = []
    pattern = r'(\s*)"([^"]+)"\s*:' if path.suffix == ".json" else r"(\s*)([A-Za-z0-9_-]+)\s*:"
    for n, line in enumerate(lines, 1):
        m = re.match(pattern, line)
        if not m:
            continue
        indent = len(m.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, m.group(2)))
        if ".".join(k for _, k in stack) == dotted:
            return n
    return None


# ---- explaining ---------------------------------------------------------------------------------


def explain(config_file: Path | None = None, **overrides: Any) -> list[tuple[str, str, str]]:
    """(setting, effective value with secrets masked, where it came from) for every setting."""
    layers = read_layers(config_file, **overrides)
    settings = load_settings(config_file, **overrides)
    secrets = secret_paths()
    rows: list[tuple[str, str, str]] = []

    def walk(value: Any, keys: list[str]) -> None:
        dotted = ".".join(keys)
        if isinstance(value, BaseModel) and not isinstance(value, SecretStr):
            for name in type(value).model_fields:
                walk(getattr(value, name), [*keys, name])
            return
        shown = "********" if dotted in secrets and value else json.dumps(_plain(value))
        rows.append((dotted, shown, layers.source_of(dotted)))

    walk(settings, [])
    return rows


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
