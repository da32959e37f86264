"""API tokens (JWT, PyJWT): the roles, the key that verifies them and the minting of one — shared
by the server (tamma.api.auth checks them) and `tamma token create`, which mints without
loading the web server."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Literal

import jwt

from tamma.config import ApiSettings
from tamma.errors import ConfigError

Role = Literal["viewer", "operator", "admin"]
RANK: dict[str, int] = {"viewer": 0, "operator": 1, "admin": 2}


def _pem(value: str) -> str:
    return value if "-----BEGIN" in value else Path(value).expanduser().read_text(encoding="utf-8")


def verification_key(api: ApiSettings) -> str:
    if api.jwt_algorithm == "HS256":
        if api.jwt_secret is None:
            raise ConfigError("the API needs api.jwt_secret (TAMMA_API__JWT_SECRET) for HS256 tokens")
        return api.jwt_secret.get_secret_value()
    if api.jwt_public_key is None:
        raise ConfigError(
            f"the API needs api.jwt_public_key (PEM or path) for {api.jwt_algorithm} tokens, or api.jwks_url"
        )
    return _pem(api.jwt_public_key)


def token_id(token: str) -> str:
    """The id (jti) of a token, read without verifying it (to say which one to revoke)."""
    return str(jwt.decode(token, options={"verify_signature": False}).get("jti", ""))


def create_token(api: ApiSettings, subject: str, role: Role, ttl_s: int) -> str:
    """Mint a token from the configured key (`tamma token create`); its id (jti) is what
    api.revoked_tokens names to refuse it before it expires."""
    if ttl_s > api.max_token_ttl_s:
        raise ConfigError(f"a token may live at most api.max_token_ttl_s ({api.max_token_ttl_s}s); ask for less")
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": subject,
        api.jwt_role_claim: role,
        "iat": now,
        "exp": now + ttl_s,
        "jti": uuid.uuid4().hex,
    }
    if api.jwt_issuer:
        claims["iss"] = api.jwt_issuer
    if api.jwt_audience:
        claims["aud"] = api.jwt_audience
    if api.jwt_algorithm == "HS256":
        key = verification_key(api)
    elif api.jwt_private_key is None:
        raise ConfigError(f"minting {api.jwt_algorithm} tokens needs api.jwt_private_key (PEM or path)")
    else:
        key = _pem(api.jwt_private_key.get_secret_value())
    return jwt.encode(claims, key, algorithm=api.jwt_algorithm)
