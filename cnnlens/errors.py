"""Errors a caller can cause, each with a stable code and the HTTP status the service maps it to."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
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


ECHO_LIMIT = 60  # characters of a caller's value an error message repeats


def shown(value: object, limit: int = ECHO_LIMIT) -> str:
    """A caller's value as an error message quotes it: its repr, cut to a short prefix (a
    request's text field can be megabytes long, and it comes back in the answer)."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}… ({len(text)} characters)"


def location(parts: object) -> str:
    """A pydantic error's `loc` as dotted text, each part cut to a short prefix."""
    assert isinstance(parts, tuple | list)
    return ".".join(str(part)[:ECHO_LIMIT] for part in parts)


def validation_problems(error: ValidationError, whole: str) -> str:
    """A pydantic error as one line, `where: what; ...` (`whole`: where the error is the
    object itself), never repeating the offending input."""
    return "; ".join(
        f"{location(issue['loc']) or whole}: {issue['msg']}" for issue in error.errors()[:10]
    )


def did_you_mean(name: str, choices: Iterable[str], limit: int = 3) -> str:
    """`; did you mean 'grad_cam'?` for the choices closest to a mistyped name (difflib,
    case-insensitive), or "" when none is close (or the name is too long to be a typo)."""
    if len(name) > 4 * ECHO_LIMIT:
        return ""
    by_folded: dict[str, str] = {}
    for choice in choices:
        by_folded.setdefault(choice.casefold(), choice)
    close = difflib.get_close_matches(name.casefold(), list(by_folded), n=limit, cutoff=0.6)
    if not close:
        return ""
    return "; did you mean " + " or ".join(repr(by_folded[c]) for c in close) + "?"


def unknown_layer(name: str, names: Iterable[str], model: str | None = None) -> LayerNotFoundError:
    """`unknown layer 'bn3'; did you mean 'bn2'?`, then where every layer name is listed."""
    where = (
        f"`cnnlens layers {model}` or GET /v1/models/{model} lists them"
        if model
        else "`cnnlens layers MODEL` or GET /v1/models/{name} lists them"
    )
    listed = list(names)
    hint = did_you_mean(name, listed) or f"; the model has {len(listed)} layers"
    return LayerNotFoundError(f"unknown layer {shown(name)}{hint} ({where})")


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
