"""The one place a TammaError becomes an HTTP status and a JSON body."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from temporalio.service import RPCError, RPCStatusCode

from tamma.errors import (
    AuthError,
    ConfigError,
    DecisionQueued,
    InvalidInputError,
    NotFoundError,
    NotReady,
    PermissionDenied,
    TammaError,
    TemporalUnavailable,
)

_STATUS: list[tuple[type[TammaError], int]] = [
    (PermissionDenied, 403),
    (AuthError, 401),
    (NotFoundError, 404),
    (DecisionQueued, 202),
    (NotReady, 409),
    (InvalidInputError, 400),
    (ConfigError, 400),
    (TemporalUnavailable, 503),
]


def status_for(exc: TammaError) -> int:
    return next((code for cls, code in _STATUS if isinstance(exc, cls)), 500 if not exc.retryable else 503)


def error_response(exc: TammaError) -> JSONResponse:
    code = status_for(exc)
    headers = {"WWW-Authenticate": "Bearer"} if code == 401 else None
    return JSONResponse({"detail": exc.message, "error": type(exc).__name__}, status_code=code, headers=headers)


#: Temporal answers that mean "not now": the caller may try again (503), never a server bug (500)
_TRANSIENT = (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.RESOURCE_EXHAUSTED)


def install(app: FastAPI) -> None:
    @app.exception_handler(TammaError)
    async def tamma_error(request: Request, exc: TammaError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RPCError)
    async def temporal_refused(request: Request, exc: RPCError) -> JSONResponse:
        if exc.status in _TRANSIENT:
            return error_response(TemporalUnavailable(f"Temporal did not answer: {exc.message[:200]}; try again"))
        raise exc

    @app.exception_handler(RuntimeError)
    async def not_connected(request: Request, exc: RuntimeError) -> JSONResponse:
        # the lazy client's first call to a Temporal that is down raises a bare RuntimeError
        if "connect" in str(exc).lower():
            return error_response(TemporalUnavailable(f"Temporal is unreachable: {str(exc).splitlines()[0][:200]}"))
        raise exc
