"""JWT bearer auth with PyJWT: HS256 shared secret or RS256 public key, `exp` required,
optional issuer and audience, and a `role` claim: viewer < operator < admin."""

from __future__ import annotations

import time
from typing import Annotated

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tamma.config import ApiSettings
from tamma.errors import AuthError, PermissionDenied
from tamma.tokens import RANK, Role, create_token, verification_key  # noqa: F401  (re-exported)


class Principal:
    def __init__(self, subject: str, role: str) -> None:
        self.subject = subject
        self.role = role


def verify(api: ApiSettings, token: str) -> Principal:
    try:
        claims = jwt.decode(
            token,
            verification_key(api),
            algorithms=[api.jwt_algorithm],  # one algorithm: no alg confusion
            issuer=api.jwt_issuer,
            audience=api.jwt_audience,
            options={"require": ["exp", "role"], "verify_aud": api.jwt_audience is not None},
        )
    except jwt.ExpiredSignatureError:
        raise AuthError("the token has expired; mint a new one with `tamma token create`") from None
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"invalid token: {exc}") from None
    role = claims.get("role")
    if not isinstance(role, str) or role not in RANK:
        raise AuthError(f"the token's role {role!r} is not one of viewer, operator, admin")
    exp = claims.get("exp")
    if isinstance(exp, (int, float)) and exp - time.time() > api.max_token_ttl_s:
        raise AuthError(f"the token lives longer than api.max_token_ttl_s ({api.max_token_ttl_s}s); mint a shorter one")
    return Principal(str(claims.get("sub", "")), role)


#: declared in the OpenAPI document (so the docs' "Authorize" takes a token); the checks and the
#: messages are ours: auto_error off, a missing or malformed header is answered below
_BEARER = HTTPBearer(
    auto_error=False, bearerFormat="JWT", description="a JWT from `tamma token create --role viewer|operator|admin`"
)


def require(role: Role) -> object:
    def check(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]
    ) -> Principal:
        if credentials is None or not credentials.credentials.strip():
            raise AuthError("missing bearer token: send Authorization: Bearer <JWT>")
        principal = verify(request.app.state.settings.api, credentials.credentials.strip())
        if RANK[principal.role] < RANK[role]:
            raise PermissionDenied(f"this needs the {role} role; the token has {principal.role}")
        return principal

    return Depends(check)


Viewer = Annotated[Principal, require("viewer")]
Operator = Annotated[Principal, require("operator")]
Admin = Annotated[Principal, require("admin")]
