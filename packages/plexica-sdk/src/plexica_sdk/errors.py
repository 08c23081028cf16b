"""One error shape for every service: ``{"error": {"code", "message", "details"}}``."""

from __future__ import annotations

from typing import Any

import asyncpg
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from plexica_sdk.guard import is_json

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    412: "precondition_failed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


class PlexicaError(Exception):
    """An error with an HTTP status and a stable machine-readable code."""

    status: int = 400
    code: str = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.details = details
        self.headers = headers


class NotFoundError(PlexicaError):
    status, code = 404, "not_found"


class ConflictError(PlexicaError):
    status, code = 409, "conflict"


class UnknownReferenceError(PlexicaError):
    """A field names a record that does not exist; ``details.field`` says which."""

    status, code = 422, "unknown_reference"


class PreconditionFailedError(PlexicaError):
    """A conditional request (``If-Match``) whose condition the current state does not meet."""

    status, code = 412, "precondition_failed"


class UnauthenticatedError(PlexicaError):
    status, code = 401, "unauthenticated"


class ForbiddenError(PlexicaError):
    status, code = 403, "forbidden"


class UnavailableError(PlexicaError):
    status, code = 503, "unavailable"


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, message, details), status_code=status, headers=headers)


async def _plexica_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PlexicaError)
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


def _is_json(content_type: str) -> bool:
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind == "application/json" or (
        kind.startswith("application/") and kind.endswith("+json")
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    content_type = request.headers.get("content-type")
    if content_type and not is_json(content_type.encode("latin-1")) and _body_not_an_object(errors):
        # The route takes JSON and got something else: the media type is wrong, not the data.
        return error_response(
            415, "unsupported_media_type", "the request body must be application/json"
        )
    details = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in errors
    ]
    return error_response(422, "validation_error", "request validation failed", details)


def _body_not_an_object(errors: Any) -> bool:
    return any(
        tuple(e.get("loc", ()))[:1] == ("body",) and len(e.get("loc", ())) == 1 for e in errors
    )


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = getattr(exc, "code", None) or _STATUS_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    return error_response(exc.status_code, code, message, headers=getattr(exc, "headers", None))


_DATA_ERRORS = (asyncpg.exceptions.DataError, asyncpg.exceptions._base.DataError)


def _is_data_error(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, (DataError, *_DATA_ERRORS)):
            return True
        seen = getattr(seen, "orig", None) or seen.__cause__
    return False


_UNREACHABLE = (
    ConnectionError,  # refused, reset, aborted
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
)


def is_unreachable(exc: BaseException) -> bool:
    """A server we need (the database, mostly) is down or restarting: not the request's fault,
    and not for long."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, _UNREACHABLE) or getattr(seen, "connection_invalidated", False):
            return True
        seen = getattr(seen, "orig", None) or seen.__cause__
    return False


def unavailable_response(
    code: str = "temporarily_unavailable",
    message: str = "a server this service needs is unavailable; try again shortly",
    retry_after: int = 2,
) -> JSONResponse:
    return error_response(503, code, message, headers={"Retry-After": str(retry_after)})


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    # The database or its driver refused a value the request carried (out of range, not
    # representable): the client's input, never a server fault. Anything else is ours.
    if is_unreachable(exc):
        return unavailable_response()
    if not _is_data_error(exc):
        raise exc  # ours: the request middleware logs it and answers 500
    structlog.get_logger("plexica.errors").info(
        "input_refused_by_database", path=request.url.path, error=type(exc).__name__
    )
    return error_response(422, "invalid_input", "a value is out of range or not representable")


async def _internal_error(_: Request, exc: Exception) -> JSONResponse:
    # The one shape even for our own faults; the request middleware logs the exception.
    # While the database is away the answer is 503 with Retry-After, never a 500.
    if is_unreachable(exc):
        return unavailable_response()
    return error_response(500, "internal_error", "internal server error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(PlexicaError, _plexica_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DBAPIError, _database_error)
    # Used by Starlette's outermost middleware: a mounted app's fault is JSON too.
    app.add_exception_handler(Exception, _internal_error)
