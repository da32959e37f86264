"""/api/v1/config: read (secrets redacted), validate, and replace the settings file (admin)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import tomli_w
import yaml
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError

from tamma.api import webhooks
from tamma.api.auth import Admin, Operator
from tamma.config import Settings, load_settings, read_config_file, read_layers
from tamma.errors import ConfigError

router = APIRouter(prefix="/api/v1", tags=["config"])
REDACTED = "**********"


log = logging.getLogger(__name__)


class Validation(BaseModel):
    valid: bool
    errors: list[str] = []


class Written(BaseModel):
    written: str
    backup: str | None
    dropped: list[str] = Field(
        default_factory=list, description="settings the file held that a replace (?replace=true) left out"
    )
    applied: list[str] = Field(description="sections in effect now (webhooks, api, approval, workflow, budget)")
    restart_required: list[str] = Field(description="changed sections read at start-up: restart server and workers")


#: settings the server reads per request, so a new config file applies at once; the others
#: (Temporal connection, worker, models, forges, data dir) are read at start-up or by the workers.
LIVE_SECTIONS = ("webhooks", "api", "approval", "workflow", "budget")


def apply_settings(app: FastAPI, new: Settings) -> tuple[list[str], list[str]]:
    """Put the live sections of `new` into effect; return (applied, needing a restart)."""
    old: Settings = app.state.settings
    changed = [name for name in Settings.model_fields if getattr(old, name) != getattr(new, name)]
    applied = [name for name in changed if name in LIVE_SECTIONS]
    current = old.model_copy(update={name: getattr(new, name) for name in applied})
    app.state.settings = current
    hub: webhooks.WebhookHub = app.state.hub
    hub.settings, hub.cfg = current, current.webhooks
    app.state.webhook_limiter.configure(current.webhooks.rate_limit_per_min)
    app.state.api_limiter.configure(current.api.rate_limit_per_min)
    return applied, [name for name in changed if name not in LIVE_SECTIONS]


_REFERENCE = re.compile(r"\b(env|file|aws-sm|vault):")


def _errors(doc: dict[str, Any], oracle_free: bool = False) -> list[str]:
    """Validation errors. With `oracle_free`, why a secret reference failed is not said: the
    answer would tell a caller whether a file exists or a variable is set on the server."""
    try:
        Settings.model_validate(doc)
    except ValidationError as exc:
        out = []
        for e in exc.errors():
            msg = e["msg"]
            if oracle_free and _REFERENCE.search(msg):
                msg = "a secret reference that cannot be checked through the API (its reason is not shown)"
            out.append(f"{'.'.join(str(p) for p in e['loc'])}: {msg}")
        return out
    return []


@router.get("/config", summary="Current settings, secrets redacted")
async def get_config(request: Request, who: Operator) -> dict[str, Any]:
    settings: Settings = request.app.state.settings
    dumped: dict[str, Any] = redact_urls(settings.model_dump(mode="json"))
    return dumped


def redact_urls(value: Any, key: str = "") -> Any:
    """A URL that carries a credential — userinfo (`https://x:TOKEN@host`), a query, or a webhook
    URL (whose path is its secret) — is shown as the placeholder, which a PUT round trip turns
    back into the file's own value."""
    if isinstance(value, dict):
        return {k: redact_urls(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_urls(v, key) for v in value]
    if not isinstance(value, str) or "://" not in value:
        return value
    try:
        u = urlsplit(value)
    except ValueError:
        return REDACTED
    if "@" in u.netloc or u.query or "webhook" in key.lower():
        return REDACTED
    return value


@router.post("/config/validate", response_model=Validation, summary="Check a settings document")
async def validate_config(doc: dict[str, Any], who: Operator) -> Validation:
    # Off the event loop: resolving references reads files and may ask a secret store.
    errors = await asyncio.to_thread(_errors, doc, True)
    return Validation(valid=not errors, errors=errors)


def _unsandboxing(doc: dict[str, Any], on_disk: dict[str, Any]) -> str:
    """Why `doc` may not be written through the API: turning the sandbox off (or allowing that)
    needs the opt-in in the file itself, so a stolen admin token cannot run agent code bare."""
    allowed = bool((on_disk.get("api") or {}).get("allow_unsandboxed_config"))
    if bool((doc.get("api") or {}).get("allow_unsandboxed_config")) and not allowed:
        return "api.allow_unsandboxed_config can only be set in the settings file, not through the API"
    backend = ((doc.get("agent") or {}).get("sandbox") or {}).get("backend")
    before = ((on_disk.get("agent") or {}).get("sandbox") or {}).get("backend")
    if backend == "none" and before != "none" and not allowed:
        return (
            "agent.sandbox.backend = none runs agent code without isolation; set it in the settings file, or "
            "set api.allow_unsandboxed_config = true there to allow it through the API"
        )
    return ""


@router.put(
    "/config",
    response_model=Written,
    summary="Change the settings file (admin): the body is a JSON merge patch on the file (RFC 7396: "
    "a value replaces, null removes, what is not named stays); ?replace=true makes the body the whole "
    "file. Validated first, backed up, written atomically",
    responses={422: {"model": Validation}},
)
async def put_config(doc: dict[str, Any], request: Request, who: Admin, replace: bool = False) -> Any:
    path: Path = request.app.state.config_path
    settings: Settings = request.app.state.settings
    try:
        on_disk = read_config_file(path) if path.exists() else {}
        environment = read_layers(path if path.exists() else None).environment
    except ConfigError as exc:
        return JSONResponse(Validation(valid=False, errors=[exc.message]).model_dump(), status_code=422)
    # A placeholder keeps what the *file* holds (a secret reference stays a reference); a secret
    # that came from the environment is not in the file and is never written into it.
    doc = _keep_redacted(doc, on_disk)
    dropped: list[str] = []
    if replace:
        dropped = _dropped(on_disk, doc)
        if dropped:
            log.warning("PUT /config?replace=true by %s drops %s from the file", who, ", ".join(dropped))
    else:
        doc = merge_patch(on_disk, doc)
    doc = _without_environment(doc, environment, settings.model_dump(mode="json"))
    refusal = _unsandboxing(doc, on_disk)
    if refusal:
        return JSONResponse(Validation(valid=False, errors=[refusal]).model_dump(), status_code=422)
    errors = await asyncio.to_thread(_errors, doc, True)
    if errors:
        return JSONResponse(Validation(valid=False, errors=errors).model_dump(), status_code=422)
    # Validate exactly what a restart would read (this file, then TAMMA_* on top) from a temp file
    # beside the real one; only a valid file replaces it, atomically.
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    tmp = Path(name)
    backup = None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(_serialise(_drop_none(doc), path.suffix))
        tmp.chmod(0o600)  # it may hold secrets
        try:
            effective = await asyncio.to_thread(load_settings, tmp)
        except ConfigError as exc:
            return JSONResponse(Validation(valid=False, errors=[exc.message]).model_dump(), status_code=422)
        if path.exists():
            backup = path.with_name(f"{path.name}.bak-{time.strftime('%Y%m%d-%H%M%S')}")
            shutil.copy2(path, backup)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    applied, restart = apply_settings(request.app, effective)
    return Written(
        written=str(path),
        backup=str(backup) if backup else None,
        dropped=dropped,
        applied=applied,
        restart_required=restart,
    )


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch (ten lines; a dependency for it would be larger than the code)."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _dropped(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted names the file held that `new` leaves out."""
    if not isinstance(old, dict):
        return []
    out: list[str] = []
    for key, value in old.items():
        if not isinstance(new, dict) or key not in new:
            out.append(f"{prefix}{key}")
        else:
            out += _dropped(value, new[key], f"{prefix}{key}.")
    return out


_DROP = object()


def _keep_redacted(new: Any, old: Any) -> Any:
    """Placeholders take the file's own value; one the file does not hold is left out."""
    if isinstance(new, dict):
        kept = {k: _keep_redacted(v, old.get(k) if isinstance(old, dict) else None) for k, v in new.items()}
        return {k: v for k, v in kept.items() if v is not _DROP}
    if isinstance(new, list):
        olds = old if isinstance(old, list) else []
        items = [_keep_redacted(v, olds[i] if i < len(olds) else None) for i, v in enumerate(new)]
        kept_items = [v for v in items if v is not _DROP]
        return _DROP if items and not kept_items else kept_items
    if new == REDACTED:
        return old if old is not None else _DROP
    return new


def _without_environment(doc: Any, environment: Any, effective: Any) -> Any:
    """Leave out values in effect because an environment variable set them (what GET showed),
    so a round trip never copies the environment into the file."""
    if not isinstance(doc, dict) or not isinstance(environment, dict):
        return doc
    out: dict[str, Any] = {}
    for key, value in doc.items():
        here = effective.get(key) if isinstance(effective, dict) else None
        if key in environment and not isinstance(environment[key], dict) and value == here:
            continue
        out[key] = _without_environment(value, environment.get(key), here) if key in environment else value
    return out


def _serialise(doc: dict[str, Any], suffix: str) -> str:
    if suffix == ".json":
        return json.dumps(doc, indent=2) + "\n"
    if suffix in (".yaml", ".yml"):
        return str(yaml.safe_dump(doc, sort_keys=False))
    return tomli_w.dumps(doc)


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value
