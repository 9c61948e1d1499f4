"""Occlusion parameters for cnnlens's `occlusion` method, whatever its fields are called.

The benchmark names window, stride and batch size once; this maps them onto the fields of
the registered method's pydantic Params (e.g. `window` or `window_size`).
"""

from __future__ import annotations

from typing import Any

from cnnlens.errors import MethodNotFoundError
from cnnlens.methods.base import Method, get_method

_ALIASES = {
    "window": ("window", "window_size", "sliding_window", "patch", "patch_size"),
    "stride": ("stride", "strides", "step"),
    "batch": ("batch_size", "perturbations_per_eval", "batch", "chunk_size"),
    "engine": ("engine",),
}


def occlusion_method() -> Method | None:
    """The registered occlusion method, or None while it is not there."""
    try:
        return get_method("occlusion")
    except MethodNotFoundError:
        return None


def _field(method: Method, role: str) -> str | None:
    fields = method.Params.model_fields
    return next((name for name in _ALIASES[role] if name in fields), None)


def engines(method: Method) -> list[str | None]:
    """The engine choices of the method's `engine` field, or [None] without one."""
    name = _field(method, "engine")
    if name is None:
        return [None]
    annotation = method.Params.model_fields[name].annotation
    choices = [str(c) for c in getattr(annotation, "__args__", ()) if isinstance(c, str)]
    explicit = [c for c in choices if c != "auto"]  # "auto" picks one of the others
    return list(explicit or choices) or [None]


def occlusion_params(
    method: Method, window: int, stride: int, batch: int, engine: str | None = None
) -> dict[str, Any]:
    """Params for a square window and stride, evaluated `batch` occluded images at a time."""
    params: dict[str, Any] = {}
    for role, value in (("window", window), ("stride", stride), ("batch", batch)):
        name = _field(method, role)
        if name is None:
            if role == "batch":
                continue  # the method picks its own batch size
            raise RuntimeError(f"occlusion Params have no {role} field: {method.Params}")
        params[name] = value
    if "fill" in method.Params.model_fields:
        params["fill"] = "zero"  # captum's baselines=0: zero in input space
    if engine is not None:
        params[_field(method, "engine") or "engine"] = engine
    return params
