"""/api/v1/config: read (secrets redacted), validate, and replace the settings file (admin)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import tomli_w
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, SecretStr, ValidationError

from tamma.api.auth import Admin, Operator
from tamma.config import Settings

router = APIRouter(prefix="/api/v1", tags=["config"])
REDACTED = "**********"


class Validation(BaseModel):
    valid: bool
    errors: list[str] = []


class Written(BaseModel):
    written: str
    backup: str | None
    restart_required: bool = True


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
    return Written(written=str(path), backup=str(backup) if backup else None)


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
