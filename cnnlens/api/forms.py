"""The v1 form fields that need no model: list splitting, JSON objects, the defaults."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

from cnnlens.errors import InvalidParamsError, shown

DEFAULT_METHOD = "grad_cam"
# The comparison every front runs when no method is named (library, REST, client, CLI).
COMPARE_METHODS = ("saliency", "grad_cam", "guided_backprop")
OUTPUTS = ("overlay", "heatmap", "array")
DEFAULT_OUTPUTS = ("overlay", "heatmap")
OVERLAY_FORMATS = ("png", "jpeg", "webp")
# The overlay format of answers to lossy uploads, by the upload's format; lossless ones: png.
_LIKE_THE_UPLOAD = {"JPEG": "jpeg", "WEBP": "webp"}
# Integers in params must survive every consumer (torch seeds are 64-bit, JSON peers use
# doubles): beyond 2**53 a number is refused rather than overflowing somewhere deep.
_MAX_JSON_INT = 2**53


def split_list(values: str | Iterable[str] | None) -> list[str]:
    """Repeated and/or comma-separated values -> distinct non-empty items in order."""
    if isinstance(values, str):
        values = [values]
    items = [item.strip() for value in values or () for item in value.split(",")]
    return list(dict.fromkeys(item for item in items if item))


def parse_outputs(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """`output` (comma list of overlay, heatmap, array) -> the outputs; empty: the default."""
    outputs = split_list(value)
    if not outputs:
        return DEFAULT_OUTPUTS
    unknown = [item for item in outputs if item not in OUTPUTS]
    if unknown:
        raise InvalidParamsError(
            f"unknown output {', '.join(map(shown, unknown[:5]))}; choose from "
            f"{', '.join(OUTPUTS)}",
            code="invalid_output",
        )
    return tuple(outputs)


def parse_box(text: str | None) -> tuple[float, float, float, float] | None:
    """`region` = "x0,y0,x1,y1" (pixels of the uploaded image) -> four numbers; empty: None.
    Whether the box lies inside the image is checked against the image."""
    if text is None or not text.strip():
        return None
    parts = [part.strip() for part in text.split(",")]
    try:
        values = tuple(float(part) for part in parts)
    except ValueError:
        values = ()
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise InvalidParamsError(
            f"region must be four numbers x0,y0,x1,y1, got {text[:60]!r}", code="bad_region"
        )
    return values[0], values[1], values[2], values[3]


def parse_overlay_format(value: str | None, upload_format: str | None = None) -> str:
    """`overlay_format` (png, jpeg or webp; jpg means jpeg) -> the format. Empty: like the
    upload, whose lossy format (`upload_format`: "JPEG", "WEBP") is kept; else png."""
    default = _LIKE_THE_UPLOAD.get(upload_format or "", "png")
    name = (value or "").strip().lower() or default
    name = "jpeg" if name == "jpg" else name
    if name not in OVERLAY_FORMATS:
        raise InvalidParamsError(
            f"unknown overlay_format {name[:40]!r}; choose from {', '.join(OVERLAY_FORMATS)}",
            code="invalid_overlay_format",
        )
    return name


def json_object(text: str | None, what: str) -> dict[str, Any]:
    """A JSON object field (bounded integers, finite numbers); empty: {}."""
    if text is None or not text.strip():
        return {}
    try:
        value = json.loads(
            text, parse_constant=_refuse_constant, parse_int=_bounded_int, parse_float=_finite
        )
    except (ValueError, RecursionError) as error:
        raise InvalidParamsError(f"{what} is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise InvalidParamsError(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in params")


def _bounded_int(text: str) -> int:
    value = int(text)
    if abs(value) > _MAX_JSON_INT:
        raise ValueError(f"integer {text[:40]} is out of range (at most 2**53 in magnitude)")
    return value


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value
