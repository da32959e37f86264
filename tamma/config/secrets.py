"""Secret settings and references to secrets kept elsewhere.

A secret setting may hold the value itself or a reference, resolved when settings are read (at
the entry points) and never written back:

- ``env:NAME``: the environment variable NAME;
- ``file:/run/secrets/x``: a file's content, trailing newline removed (Kubernetes and compose
  secrets);
- ``aws-sm:SECRET_ID`` or ``aws-sm:SECRET_ID#json_key``: AWS Secrets Manager (``pip install
  'tamma[aws]'``; region and credentials from the usual AWS variables, ``AWS_ENDPOINT_URL`` too);
- ``vault:PATH#KEY``: a HashiCorp Vault KV v2 secret (``pip install 'tamma[vault]'``;
  ``VAULT_ADDR`` and ``VAULT_TOKEN``; mount ``secret`` unless the path starts with ``MOUNT:``).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, SecretStr

REFERENCE_PREFIXES = ("env:", "file:", "aws-sm:", "vault:")


def is_reference(value: object) -> bool:
    return isinstance(value, str) and value.startswith(REFERENCE_PREFIXES)


def resolve_reference(value: str) -> str:
    """The secret a reference names; ValueError (shown with the setting's name) when it cannot."""
    kind, _, target = value.partition(":")
    if not target:
        raise ValueError(f"the reference {kind}: names nothing")
    if kind == "env":
        found = os.environ.get(target)
        if not found:
            raise ValueError(f"env:{target} is referenced but the environment variable {target} is not set")
        return found
    if kind == "file":
        return _read_secret_file(Path(target).expanduser()).rstrip("\n")
    if kind == "aws-sm":
        return _aws(target)
    return _vault(target)


MAX_SECRET_FILE = 1024 * 1024


def _read_secret_file(path: Path) -> str:
    """A secret file's text: a regular file (never a FIFO or a device, which could block or never
    end), at most MAX_SECRET_FILE bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ValueError(f"file:{path} cannot be read ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise ValueError(f"file:{path} is not a regular file")
        data = fh.read(MAX_SECRET_FILE + 1)
    if len(data) > MAX_SECRET_FILE:
        raise ValueError(f"file:{path} is larger than {MAX_SECRET_FILE} bytes; a secret file holds one secret")
    return data.decode("utf-8", errors="replace")


def _aws(target: str) -> str:
    try:
        import boto3
    except ImportError:
        raise ValueError("aws-sm: references need boto3: pip install 'tamma[aws]'") from None
    secret_id, _, key = target.partition("#")
    try:
        answer = boto3.client("secretsmanager").get_secret_value(SecretId=secret_id)
    except Exception as exc:  # botocore raises many types; each becomes one clear line
        raise ValueError(f"aws-sm:{secret_id} could not be read: {type(exc).__name__}: {exc}") from None
    text = str(answer.get("SecretString", ""))
    return _pick(text, key, f"aws-sm:{secret_id}")


def _vault(target: str) -> str:
    try:
        import hvac
    except ImportError:
        raise ValueError("vault: references need hvac: pip install 'tamma[vault]'") from None
    path, _, key = target.partition("#")
    mount, _, sub = path.partition(":") if ":" in path else ("secret", "", path)
    if not key:
        raise ValueError(f"vault:{path} needs the key to read: vault:{path}#KEY")
    try:
        client = hvac.Client(url=os.environ.get("VAULT_ADDR"), token=os.environ.get("VAULT_TOKEN"))
        data = client.secrets.kv.v2.read_secret_version(path=sub, mount_point=mount, raise_on_deleted_version=True)
        return str(data["data"]["data"][key])
    except Exception as exc:  # hvac raises many types; each becomes one clear line
        raise ValueError(f"vault:{path}#{key} could not be read: {type(exc).__name__}") from None


def _pick(text: str, key: str, where: str) -> str:
    if not key:
        return text
    try:
        return str(json.loads(text)[key])
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{where} holds no JSON key {key!r}") from None


def _resolve(value: Any) -> Any:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    return resolve_reference(value) if is_reference(value) else value


#: A secret setting: a SecretStr whose value may be a reference, resolved on validation.
Secret = Annotated[SecretStr, BeforeValidator(_resolve)]
