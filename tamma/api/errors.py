"""The one place a TammaError becomes an HTTP status and a JSON body."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

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


def install(app: FastAPI) -> None:
    @app.exception_handler(TammaError)
    async def tamma_error(request: Request, exc: TammaError) -> JSONResponse:
        return error_response(exc)
