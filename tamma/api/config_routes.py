"""/api/v1/config: read (secrets redacted), validate, and replace the settings file (admin)."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

import tomli_w
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, SecretStr, ValidationError

from tamma.api import webhooks
from tamma.api.auth import Admin, Operator
from tamma.config import Settings, load_settings
from tamma.errors import ConfigError

router = APIRouter(prefix="/api/v1", tags=["config"])
REDACTED = "**********"


class Validation(BaseModel):
    valid: bool
    errors: list[str] = []


class Written(BaseModel):
    written: str
    backup: str | None
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


def _errors(doc: dict[str, Any]) -> list[str]:
    try:
        Settings.model_validate(doc)
    except ValidationError as exc:
        return [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
    return []


def _keep_redacted(new: Any, old: Any) -> Any:
    """A secret sent back as the redacted placeholder keeps its current value."""
    if isinstance(new, dict):
        return {k: _keep_redacted(v, old.get(k) if isinstance(old, dict) else None) for k, v in new.items()}
    if isinstance(new, list):
        return [
            _keep_redacted(v, old[i] if isinstance(old, list) and i < len(old) else None) for i, v in enumerate(new)
        ]
    return old if new == REDACTED else new


@router.get("/config", summary="Current settings, secrets redacted")
async def get_config(request: Request, who: Operator) -> dict[str, Any]:
    settings: Settings = request.app.state.settings
    dumped: dict[str, Any] = settings.model_dump(mode="json")
    return dumped


@router.post("/config/validate", response_model=Validation, summary="Check a settings document")
async def validate_config(doc: dict[str, Any], who: Operator) -> Validation:
    errors = _errors(doc)
    return Validation(valid=not errors, errors=errors)


@router.put(
    "/config",
    response_model=Written,
    summary="Replace the settings file (admin; backed up first)",
    responses={422: {"model": Validation}},
)
async def put_config(doc: dict[str, Any], request: Request, who: Admin) -> Any:
    settings: Settings = request.app.state.settings
    current = _unredacted(settings)
    doc = _keep_redacted(doc, current)
    errors = _errors(doc)
    if errors:
        return JSONResponse(Validation(valid=False, errors=errors).model_dump(), status_code=422)
    path: Path = request.app.state.config_path
    backup = None
    if path.exists():
        backup = path.with_name(f"{path.name}.bak-{time.strftime('%Y%m%d-%H%M%S')}")
        shutil.copy2(path, backup)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(tomli_w.dumps(_drop_none(doc)), encoding="utf-8")
    tmp.chmod(0o600)  # it may hold secrets
    tmp.replace(path)
    # What a restart would read (the file, then TAMMA_* and vendor variables on top), so the
    # server and the file never disagree about what is in effect.
    try:
        effective = await asyncio.to_thread(load_settings, path)
    except ConfigError as exc:  # e.g. an environment variable now clashes with the new file
        return JSONResponse(Validation(valid=False, errors=[exc.message]).model_dump(), status_code=422)
    applied, restart = apply_settings(request.app, effective)
    return Written(written=str(path), backup=str(backup) if backup else None, applied=applied, restart_required=restart)


def _unredacted(settings: Settings) -> dict[str, Any]:
    def reveal(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return value.get_secret_value()
        if isinstance(value, BaseModel):
            return {k: reveal(getattr(value, k)) for k in type(value).model_fields}
        if isinstance(value, dict):
            return {k: reveal(v) for k, v in value.items()}
        if isinstance(value, list):
            return [reveal(v) for v in value]
        return str(value) if isinstance(value, Path) else value

    revealed: dict[str, Any] = reveal(settings)
    return revealed


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value
