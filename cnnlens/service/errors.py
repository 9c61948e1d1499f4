"""Service-level errors and the handlers that turn every error into {"error": {code, message}}."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cnnlens.errors import CnnlensError, location

logger = logging.getLogger("cnnlens.service")


class ServiceError(CnnlensError):
    """A CnnlensError that may carry response headers (Retry-After, WWW-Authenticate)."""

    headers: Mapping[str, str] = {}

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, code=code, status=status)
        if headers is not None:
            self.headers = dict(headers)


class RetryLaterError(ServiceError):
    """A 503 the client may retry: it says when, in a Retry-After header."""

    status = 503

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class QueueFullError(RetryLaterError):
    code = "queue_full"


class NotReadyError(RetryLaterError):
    code = "not_ready"


class ComputeOutOfMemoryError(RetryLaterError):
    """The batch ran out of (GPU or host) memory; the worker freed it and goes on."""

    code = "out_of_memory"


class DeadlineExceededError(ServiceError):
    code = "deadline_exceeded"
    status = 504


class PayloadTooLargeError(ServiceError):
    code = "payload_too_large"
    status = 413


class UnauthorizedError(ServiceError):
    code = "unauthorized"
    status = 401

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": "X-API-Key"})


class NotAcceptableError(ServiceError):
    code = "not_acceptable"
    status = 406


def documented_errors(*answers: tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    """A route's error answers for its OpenAPI `responses`: (status, when) -> ErrorBody."""
    from cnnlens.api.models import ErrorBody

    return {status: {"model": ErrorBody, "description": when} for status, when in answers}


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status, headers=dict(headers or {}))


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    503: "unavailable",
}


def _validation_message(error: RequestValidationError) -> str:
    """Where and what, never the offending input itself (it may be binary or huge)."""
    problems = []
    for issue in error.errors()[:10]:
        where = location([part for part in issue.get("loc", ()) if part != "body"])
        problems.append(f"{where or 'request'}: {issue.get('msg', 'invalid')}")
    return "; ".join(problems) or "invalid request"


# However an error quotes the request, its message stays this short (values are cut to a
# prefix where they are quoted; this bounds what a message missed).
MAX_MESSAGE_CHARS = 2000


async def _cnnlens_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, CnnlensError)
    headers = getattr(error, "headers", None)
    if error.status >= 500:
        logger.warning("request failed: %s", error.message, extra={"code": error.code})
    message = error.message
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 1] + "…"
    return error_response(error.status, error.code, message, headers)


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    return error_response(422, "invalid_request", _validation_message(error))


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    code = _HTTP_CODES.get(error.status_code, "http_error")
    message = str(error.detail) if error.detail else code.replace("_", " ")
    return error_response(error.status_code, code, message, error.headers)


async def _unexpected_error(request: Request, error: Exception) -> JSONResponse:
    from cnnlens.service.security import API_POLICY, SECURITY_HEADERS

    logger.error("unhandled error", exc_info=(type(error), error, error.__traceback__))
    # answered by Starlette's outermost middleware, past the one that adds these headers
    headers = {**SECURITY_HEADERS, "Content-Security-Policy": API_POLICY}
    return error_response(500, "internal_error", "internal server error", headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(CnnlensError, _cnnlens_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
