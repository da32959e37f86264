"""Redaction by construction: one object that knows every secret value Tamma holds and takes
them out of any text leaving a boundary (sandbox output, tool results, recordings, logs,
artifacts, workflow history).

Secrets are collected by walking settings for ``SecretStr`` values (see ``secret_values``), so a
new secret setting is covered the day it is declared, and by adding the credentials platforms
and providers derive at run time (installation tokens, basic-auth headers).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: the CLI loads this module at start, pydantic is slow to load
    from pydantic import BaseModel

REDACTED = "[REDACTED]"
_MIN_LEN = 4  # shorter "secrets" would shred ordinary text; settings validation rejects them anyway


class Redactor:
    """Replaces every known secret (and its base64 and basic-auth forms) with ``[REDACTED]``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        for secret in secrets:
            if not secret or len(secret) < _MIN_LEN:
                continue
            self._secrets.add(secret)
            self._secrets.add(base64.b64encode(secret.encode()).decode().rstrip("="))
            for line in secret.splitlines():  # a PEM key also leaks line by line
                if len(line) >= 16:
                    self._secrets.add(line)
        self._ordered = sorted(self._secrets, key=len, reverse=True)

    @property
    def values(self) -> list[str]:
        return list(self._ordered)

    def __call__(self, text: str) -> str:
        for secret in self._ordered:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def __bool__(self) -> bool:
        return bool(self._secrets)


def secret_values(model: BaseModel) -> list[str]:
    """Every non-empty SecretStr reachable from `model` (nested models, lists, dicts), plus the
    content of a secret that names a readable file (PEM keys may be given as paths)."""
    from pydantic import BaseModel, SecretStr

    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, SecretStr):
            raw = value.get_secret_value()
            if raw:
                found.append(raw)
                found.extend(_file_content(raw))
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name))
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple | set):
            for item in value:
                walk(item)

    walk(model)
    return found


def _file_content(value: str) -> list[str]:
    if "\n" in value or len(value) > 4096 or not value.startswith(("/", "~", ".")):
        return []
    try:
        path = Path(value).expanduser()
        return [path.read_text(encoding="utf-8").strip()] if path.is_file() else []
    except (OSError, UnicodeDecodeError):
        return []
