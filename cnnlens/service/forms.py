"""Parsing and validating the text fields of the v1 requests, before any work is queued."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from cnnlens.errors import InvalidParamsError, LayerNotFoundError, TargetError
from cnnlens.methods.base import Method, MethodParams, get_method, parse_params
from cnnlens.methods.targets import class_index
from cnnlens.models.loaded import LoadedModel

OUTPUTS = ("overlay", "heatmap", "array")
DEFAULT_OUTPUTS = ("overlay", "heatmap")
_MAX_METHODS = 32
# Integers in params must survive every consumer (torch seeds are 64-bit, JSON peers use
# doubles): beyond 2**53 a number is refused rather than overflowing somewhere deep.
_MAX_JSON_INT = 2**53
_MAX_TARGET_CHARS = 200


def split_list(values: Sequence[str] | None) -> list[str]:
    """Repeated and/or comma-separated form values -> distinct items in order."""
    items = [item.strip() for value in values or () for item in value.split(",")]
    return list(dict.fromkeys(item for item in items if item))


def parse_methods(values: Sequence[str] | None, default: str = "grad_cam") -> list[Method]:
    names = split_list(values) or [default]
    if len(names) > _MAX_METHODS:
        raise InvalidParamsError(f"at most {_MAX_METHODS} methods per request")
    return [get_method(name) for name in names]  # 422 unknown_method


def parse_outputs(value: str | None) -> tuple[str, ...]:
    if value is None or not value.strip():
        return DEFAULT_OUTPUTS
    outputs = split_list([value])
    unknown = [item for item in outputs if item not in OUTPUTS]
    if unknown:
        raise InvalidParamsError(
            f"unknown output {', '.join(unknown)!s}; choose from {', '.join(OUTPUTS)}",
            code="invalid_output",
        )
    return tuple(outputs)


def parse_targets(values: Sequence[str] | None, model: LoadedModel, limit: int) -> list[int]:
    """Class indices or labels (each field one target) -> distinct class indices."""
    texts = [value.strip() for value in values or () if value.strip()]
    if len(texts) > limit:
        raise TargetError(f"at most {limit} targets per request, got {len(texts)}")
    return list(dict.fromkeys(parse_class(text, model) for text in texts))


def parse_class(value: int | str, model: LoadedModel) -> int:
    """One class index or label -> its index; a 422 for anything else (never a ValueError)."""
    if isinstance(value, str) and len(value) > _MAX_TARGET_CHARS:
        raise TargetError(f"a target is at most {_MAX_TARGET_CHARS} characters")
    try:
        return class_index(value, model.categories, len(model.categories) or 1000)
    except ValueError:  # digits int() refuses: "²", "--5"
        raise TargetError(f"target {value!r} is not a class index or label") from None


def parse_layer(value: str | None, model: LoadedModel) -> str | None:
    if value is None or not value.strip():
        return None
    name = value.strip()
    if model.layers.get(name) is None:
        raise LayerNotFoundError(
            f"unknown layer {name!r} for model {model.name!r}; see GET /v1/models/{model.name}"
        )
    return name


def _json_object(text: str | None, what: str) -> dict[str, Any]:
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


def parse_params_by_method(text: str | None, methods: Sequence[Method]) -> dict[str, MethodParams]:
    """`params` = a JSON object keyed by method name -> validated params for each method.

    Keys must be known methods; params for a method not requested are validated too (so a
    typo is an error) but unused.
    """
    raw = _json_object(text, "params")
    parsed: dict[str, MethodParams] = {}
    for name, value in raw.items():
        method = get_method(name)  # 422 for a key that is not a method
        if not isinstance(value, dict):
            raise InvalidParamsError(f"params for {name!r} must be a JSON object")
        parsed[name] = parse_params(method, value)
    return {m.name: parsed.get(m.name) or parse_params(m, {}) for m in methods}


def parse_method_params(text: str | None, method: Method) -> MethodParams:
    """`params` for a single-method route: the method's own fields, or {method: {...}}."""
    raw = _json_object(text, "params")
    if set(raw) == {method.name} and isinstance(raw[method.name], dict):
        raw = raw[method.name]
    return parse_params(method, raw)


def params_key(params: MethodParams) -> str:
    """Canonical JSON of validated params: equal settings batch together."""
    return params.model_dump_json()
