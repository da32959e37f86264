"""JWT bearer auth with PyJWT: an HS256 shared secret, an RS256/ES256 public key, or the keys a
team's identity provider publishes (api.jwks_url; PyJWKClient caches them and refetches on an
unknown kid, at most once per 30 s). `exp` required, optional issuer and audience, a role claim
(viewer < operator < admin), and a token id (jti) that api.revoked_tokens can refuse.

Tamma's own tokens are revoked by id, or by their refresh session's id (tamma.runtime.sessions
mints and rotates those; a refresh token is never accepted here). Under api.jwks_url refresh and
session revocation are the identity provider's."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Annotated, Any

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tamma.config import ApiSettings
from tamma.errors import AuthError, PermissionDenied, TammaError
from tamma.tokens import RANK, REFRESH, Role, create_token, verification_key  # noqa: F401  (re-exported)


class Principal:
    def __init__(self, subject: str, role: str, session: str | None = None) -> None:
        self.subject = subject
        self.role = role
        self.session = session  # the refresh session that minted the token, if one did


JWKS_LIFESPAN_S = 300.0
JWKS_COOLDOWN_S = 30.0
_JWKS: dict[str, jwt.PyJWKClient] = {}
_JWKS_LOCK = threading.Lock()


def _key(api: ApiSettings, token: str) -> Any:
    if api.jwks_url is None:
        return verification_key(api)
    with _JWKS_LOCK:
        client = _JWKS.get(api.jwks_url)
        if client is None:
            # The key set is cached for JWKS_LIFESPAN_S and fetched again at most every JWKS_COOLDOWN_S
            # for an unknown kid (a flood of made-up kids cannot make Tamma hammer the provider).
            # No per-kid cache (cache_keys): it never expires, so a key the provider withdrew (a
            # compromised one) would be trusted for ever; with the set's cache it goes in 5 minutes.
            client = _JWKS[api.jwks_url] = jwt.PyJWKClient(
                api.jwks_url, cache_keys=False, lifespan=JWKS_LIFESPAN_S, timeout=5, cooldown_duration=JWKS_COOLDOWN_S
            )
    try:
        return client.get_signing_key_from_jwt(token).key
    except jwt.PyJWKClientConnectionError as exc:
        raise TammaError(
            f"cannot fetch the identity provider's keys from api.jwks_url ({exc}); try again", retryable=True
        ) from None
    except (jwt.PyJWKClientError, jwt.DecodeError) as exc:
        raise AuthError(f"invalid token: {exc}") from None


def _ask_for_another(api: ApiSettings) -> str:
    """Where a new token comes from: the identity provider when one signs them, else Tamma's key."""
    if api.jwks_url is not None:
        return "ask your identity provider (the one api.jwks_url names) for a new one"
    return "mint a new one with `tamma token create`"


def verify(api: ApiSettings, token: str) -> Principal:
    claim = api.jwt_role_claim
    try:
        claims = jwt.decode(
            token,
            _key(api, token),
            algorithms=[api.jwt_algorithm],  # one algorithm: no alg confusion
            issuer=api.jwt_issuer,
            audience=api.jwt_audience,
            options={"require": ["exp"], "verify_aud": api.jwt_audience is not None},
        )
    except jwt.ExpiredSignatureError:
        raise AuthError(f"the token has expired; {_ask_for_another(api)}") from None
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"invalid token: {exc}") from None
    if claims.get("typ") == REFRESH:
        raise AuthError("a refresh token is not an access token: POST it to /auth/refresh for one")
    jti, sid = claims.get("jti"), claims.get("sid")
    if isinstance(jti, str) and jti in api.revoked_tokens:
        raise AuthError("the token was revoked (api.revoked_tokens); ask for a new one")
    if isinstance(sid, str) and sid in api.revoked_tokens:
        raise AuthError("the token's session was revoked (api.revoked_tokens); start a new one")
    role = claims.get(claim)
    if role is None:
        raise AuthError(f"invalid token: it has no {claim!r} claim (viewer, operator or admin)")
    if not isinstance(role, str) or role not in RANK:
        raise AuthError(f"the token's {claim} claim {role!r} is not one of viewer, operator, admin")
    exp = claims.get("exp")
    if isinstance(exp, (int, float)) and exp - time.time() > api.max_token_ttl_s:
        raise AuthError(
            f"the token lives longer than api.max_token_ttl_s ({api.max_token_ttl_s}s); "
            + ("the identity provider must issue shorter-lived ones" if api.jwks_url else "mint a shorter one")
        )
    return Principal(str(claims.get("sub", "")), role, sid if isinstance(sid, str) and api.jwks_url is None else None)


async def verified(state: Any, token: str) -> Principal:
    """verify() (in a thread: a JWKS fetch blocks), then, for a token a refresh session minted,
    whether that session still stands (tamma.runtime.sessions.SessionCheck)."""
    principal = await asyncio.to_thread(verify, state.settings.api, token)
    check = getattr(state, "session_check", None)
    if principal.session is not None and check is not None:
        await check.ensure(state.settings, principal.session)
    return principal


async def revoked_since(state: Any, principal: Principal) -> str | None:
    """For a stream that outlives its request (SSE, WebSocket): why the token's session has been
    revoked since, or None while it stands."""
    check = getattr(state, "session_check", None)
    if principal.session is None or check is None:
        return None
    try:
        await check.ensure(state.settings, principal.session)
    except AuthError as exc:
        return exc.message
    return None


#: declared in the OpenAPI document (so the docs' "Authorize" takes a token); the checks and the
#: messages are ours: auto_error off, a missing or malformed header is answered below
_BEARER = HTTPBearer(
    auto_error=False, bearerFormat="JWT", description="a JWT from `tamma token create --role viewer|operator|admin`"
)


def require(role: Role) -> object:
    async def check(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]
    ) -> Principal:
        if credentials is None or not credentials.credentials.strip():
            raise AuthError("missing bearer token: send Authorization: Bearer <JWT>")
        principal = await verified(request.app.state, credentials.credentials.strip())
        if RANK[principal.role] < RANK[role]:
            raise PermissionDenied(f"this needs the {role} role; the token has {principal.role}")
        return principal

    return Depends(check)


Viewer = Annotated[Principal, require("viewer")]
Operator = Annotated[Principal, require("operator")]
Admin = Annotated[Principal, require("admin")]
