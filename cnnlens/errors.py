"""Errors a caller can cause, each with a stable code and the HTTP status the service maps it to."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class CnnlensError(Exception):
    """Base of every error caused by the caller's input (never by a bug)."""

    code = "bad_request"
    status = 400

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status


def validation_problems(error: ValidationError, whole: str) -> str:
    """A pydantic error as one line, `where: what; ...` (`whole`: where the error is the
    object itself), never repeating the offending input."""
    return "; ".join(
        f"{'.'.join(str(part) for part in issue['loc']) or whole}: {issue['msg']}"
        for issue in error.errors()
    )


class ModelNotFoundError(CnnlensError):
    code = "unknown_model"
    status = 404


class WeightsError(CnnlensError):
    """A weights file that is missing, unreadable or does not fit the architecture."""

    code = "bad_weights"
    status = 422


class LayerNotFoundError(CnnlensError):
    code = "unknown_layer"
    status = 422


class TargetError(CnnlensError):
    code = "bad_target"
    status = 422


class NoDetectionError(TargetError):
    """A detector's target that matches no detection: its score, and its map, would be 0."""

    code = "no_detection"


class MethodNotFoundError(CnnlensError):
    code = "unknown_method"
    status = 422


class InvalidParamsError(CnnlensError):
    code = "invalid_params"
    status = 422


class IncompatibleModelError(CnnlensError):
    """The method cannot be applied faithfully to this model (e.g. guided backprop over SiLU)."""

    code = "incompatible_model"
    status = 422


class ImageDecodeError(CnnlensError):
    code = "bad_image"
    status = 400


class OverBudgetError(CnnlensError):
    """A request whose estimated work or memory exceeds the service's budget, refused up front.

    `param` names what to change (a method param, or "targets") and `limit` the value that
    fits: the largest one where lowering it helps, the smallest where raising it does.
    """

    code = "over_budget"
    status = 422

    def __init__(
        self, message: str, *, method: str, param: str | None = None, limit: int | None = None
    ) -> None:
        super().__init__(message)
        self.method = method
        self.param = param
        self.limit = limit


class ResponseTooLargeError(CnnlensError):
    """The response a request asks for would exceed the size or rendering limit."""

    code = "response_too_large"
    status = 422
