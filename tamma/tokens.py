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
from tamma.errors import AuthError, ConfigError

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


#: the `typ` claim of a refresh token: never accepted as a bearer token, only by POST /auth/refresh
REFRESH = "refresh"
NEW_SESSION = "start a new session with `tamma token create --refresh`"
SEND_REFRESH = "send the refresh_token that `tamma token create --refresh` or POST /auth/refresh gave"


def _signing_key(api: ApiSettings) -> str:
    if api.jwt_algorithm == "HS256":
        return verification_key(api)
    if api.jwt_private_key is None:
        raise ConfigError(f"minting {api.jwt_algorithm} tokens needs api.jwt_private_key (PEM or path)")
    return _pem(api.jwt_private_key.get_secret_value())


def _mint(api: ApiSettings, claims: dict[str, object], ttl_s: int) -> str:
    now = int(time.time())
    claims = {**claims, "iat": now, "exp": now + ttl_s, "jti": uuid.uuid4().hex}
    if api.jwt_issuer:
        claims["iss"] = api.jwt_issuer
    if api.jwt_audience:
        claims["aud"] = api.jwt_audience
    return jwt.encode(claims, _signing_key(api), algorithm=api.jwt_algorithm)


def create_token(api: ApiSettings, subject: str, role: Role, ttl_s: int, session: str = "") -> str:
    """Mint an access token from the configured key (`tamma token create`, or a refresh); its id
    (jti) — or its session's id (sid) — is what api.revoked_tokens names to refuse it early."""
    if ttl_s > api.max_token_ttl_s:
        raise ConfigError(f"a token may live at most api.max_token_ttl_s ({api.max_token_ttl_s}s); ask for less")
    claims: dict[str, object] = {"sub": subject, api.jwt_role_claim: role}
    if session:
        claims["sid"] = session
    return _mint(api, claims, ttl_s)


def create_refresh_token(api: ApiSettings, subject: str, session: str, generation: int, ttl_s: int) -> str:
    """A refresh token: which session, which generation of it. It carries no role (the session
    holds it) and its `typ` makes the API refuse it as a bearer token."""
    return _mint(api, {"sub": subject, "typ": REFRESH, "sid": session, "gen": generation}, ttl_s)


def read_refresh_token(api: ApiSettings, token: str) -> tuple[str, int]:
    """(session id, generation) of a refresh token whose signature, expiry, issuer and audience
    hold; AuthError (what was wrong and what to do) otherwise."""
    if api.jwks_url is not None:
        raise AuthError(
            "this server verifies tokens from the identity provider at api.jwks_url: refresh them there, not at Tamma"
        )
    try:
        claims = jwt.decode(
            token,
            verification_key(api),
            algorithms=[api.jwt_algorithm],
            issuer=api.jwt_issuer,
            audience=api.jwt_audience,
            options={"require": ["exp", "sid", "gen", "typ"], "verify_aud": api.jwt_audience is not None},
        )
    except jwt.ExpiredSignatureError:
        raise AuthError(f"the refresh token has expired; {NEW_SESSION}") from None
    except jwt.MissingRequiredClaimError as exc:
        raise AuthError(f"not a refresh token ({exc}); {SEND_REFRESH}") from None
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"invalid refresh token: {exc}") from None
    sid, gen = claims.get("sid"), claims.get("gen")
    if claims.get("typ") != REFRESH or not isinstance(sid, str) or not sid or type(gen) is not int:
        raise AuthError(f"not a refresh token; {SEND_REFRESH}")
    return sid, gen
