"""Errors the client raises: the service's JSON errors, typed, and transport failures."""

from __future__ import annotations

import json
from typing import Any


class CnnlensAPIError(Exception):
    """The service answered with an error (`{"error": {"code", "message"}}`) or not at all.

    Attributes:
        status: the HTTP status (0 when no answer came back).
        code: the service's stable error code, e.g. "unknown_method".
        message: the human-readable message.
        retry_after: seconds from the `Retry-After` header of a 429 / 503, if any.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        retry_after: float | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.body = body

    @property
    def is_client_error(self) -> bool:
        """True for 4xx: the request itself was wrong."""
        return 400 <= self.status < 500


class CnnlensConnectionError(CnnlensAPIError):
    """No answer: the server is unreachable or the request timed out."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(0, code, message)


def error_from_response(status: int, content: bytes, headers: dict[str, str]) -> CnnlensAPIError:
    """A CnnlensAPIError from an error response, whatever shape its body has."""
    retry_after = _retry_after(headers.get("retry-after"))
    try:
        body: Any = json.loads(content) if content else None
    except (ValueError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        return CnnlensAPIError(
            status,
            str(error.get("code", f"http_{status}")),
            str(error.get("message", "")),
            retry_after=retry_after,
            body=body,
        )
    if isinstance(body, dict) and "detail" in body:  # a framework-level error
        detail = body["detail"]
        message = detail if isinstance(detail, str) else json.dumps(detail)
        return CnnlensAPIError(
            status, f"http_{status}", message, retry_after=retry_after, body=body
        )
    text = content.decode("utf-8", "replace").strip()[:500] if content else ""
    return CnnlensAPIError(
        status, f"http_{status}", text or "no message", retry_after=retry_after, body=body
    )


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None
