"""Requests and answers of the REST API v1, shared by Client and AsyncClient (no I/O here)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import numpy as np
from PIL import Image

from cnnlens.client import results
from cnnlens.client.errors import error_from_response

T = TypeVar("T")

ImageInput = str | Path | bytes | Image.Image | np.ndarray
TargetInput = int | str | Sequence[int | str] | None
FormData = dict[str, str | list[str]]

OUTPUTS = ("overlay", "heatmap", "array")


@dataclass
class Call(Generic[T]):
    """One HTTP request and how to read its successful answer."""

    method: str
    path: str
    parse: Callable[[Any], T]  # JSON body (or raw bytes when `raw`) -> result
    data: FormData | None = None
    files: dict[str, tuple[str, bytes, str]] | list[tuple[str, tuple[str, bytes, str]]] | None = (
        None
    )
    headers: dict[str, str] = field(default_factory=dict)
    raw: bool = False  # parse the bytes, not JSON

    def result(self, status: int, content: bytes, headers: Mapping[str, str]) -> T:
        if status >= 400:
            raise error_from_response(status, content, {k.lower(): v for k, v in headers.items()})
        return self.parse(content if self.raw else json.loads(content))


def image_file(image: ImageInput, filename: str | None = None) -> tuple[str, bytes, str]:
    """(filename, bytes, content type) for a multipart upload; arrays and PIL images as PNG."""
    if isinstance(image, str | Path):
        path = Path(image)
        return filename or path.name, path.read_bytes(), "application/octet-stream"
    if isinstance(image, bytes | bytearray | memoryview):
        return filename or "image", bytes(image), "application/octet-stream"
    if isinstance(image, np.ndarray):
        array = image
        if array.dtype != np.uint8:
            scale = 255.0 if float(array.max(initial=0)) <= 1.0 else 1.0
            array = np.clip(array * scale + 0.5, 0, 255).astype(np.uint8)
        image = Image.fromarray(array)
    if isinstance(image, Image.Image):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return filename or "image.png", buffer.getvalue(), "image/png"
    raise TypeError(f"cannot upload an image from {type(image).__name__}")


def _targets(target: TargetInput) -> list[str]:
    if target is None:
        return []
    values = [target] if isinstance(target, int | str) else list(target)
    return [str(value) for value in values]


def _form(**fields: Any) -> FormData:
    """Multipart text fields, leaving out None and empty lists; dicts become JSON."""
    form: FormData = {}
    for key, value in fields.items():
        if value is None or value == [] or value == {}:
            continue
        if isinstance(value, Mapping):
            form[key] = json.dumps(value)
        elif isinstance(value, list):
            form[key] = [str(v) for v in value]
        else:
            form[key] = str(value)
    return form


def _method_list(methods: str | Sequence[str]) -> list[str]:
    values = [methods] if isinstance(methods, str) else list(methods)
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def explain(
    image: ImageInput,
    *,
    model: str | None,
    methods: str | Sequence[str],
    target: TargetInput,
    layer: str | None,
    params: Mapping[str, Mapping[str, Any]] | None,
    output: str | Sequence[str],
    filename: str | None,
) -> Call[results.ExplainResult]:
    outputs = _method_list(output)
    unknown = sorted(set(outputs) - set(OUTPUTS))
    if unknown:
        raise ValueError(f"unknown output {unknown}; choose from {', '.join(OUTPUTS)}")
    return Call(
        "POST",
        "/v1/explain",
        results.ExplainResult.from_json,
        data=_form(
            model=model,
            method=_method_list(methods),
            target=_targets(target),
            layer=layer,
            params=dict(params) if params else None,
            output=",".join(outputs),
        ),
        files={"image": image_file(image, filename)},
    )


def explain_png(
    image: ImageInput,
    *,
    model: str | None,
    method: str,
    target: int | str | None,
    layer: str | None,
    params: Mapping[str, Any] | None,
    filename: str | None,
) -> Call[Image.Image]:
    def parse(content: bytes) -> Image.Image:
        picture = Image.open(io.BytesIO(content))
        picture.load()
        return picture

    return Call(
        "POST",
        "/v1/explain",
        parse,
        data=_form(
            model=model,
            method=method,
            target=_targets(target),
            layer=layer,
            params={method: dict(params)} if params else None,
        ),
        files={"image": image_file(image, filename)},
        headers={"Accept": "image/png"},
        raw=True,
    )


def _option_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return ",".join(str(item) for item in value) or "none"
    return str(value)


def compare(
    images: ImageInput | list[ImageInput],
    *,
    model: str | None,
    methods: str | Sequence[str],
    target: int | str | None,
    layer: str | None,
    params: Mapping[str, Mapping[str, Any]] | None,
    options: Mapping[str, Any] | None,
) -> Call[results.CompareResult]:
    """POST /v1/compare; `options` are its form fields (scores, steps, baseline, top_k, ...)."""
    uploads = images if isinstance(images, list) else [images]
    if not uploads:
        raise ValueError("compare needs at least one image")
    form = _form(
        model=model,
        method=_method_list(methods),
        target=_targets(target),
        layer=layer,
        params=dict(params) if params else None,
    )
    for key, value in (options or {}).items():
        if value is not None:
            form[key] = _option_text(value)
    return Call(
        "POST",
        "/v1/compare",
        results.CompareResult.from_json,
        data=form,
        files=[("image", image_file(upload)) for upload in uploads],
    )


def image_route(
    path: str,
    parse: Callable[[Any], T],
    image: ImageInput | None,
    *,
    model: str | None,
    target: TargetInput = None,
    layer: str | None = None,
    params: Mapping[str, Any] | None = None,
    filename: str | None = None,
) -> Call[T]:
    """The single-method routes (adversarial, activation-max, feature-maps, filters)."""
    return Call(
        "POST",
        path,
        parse,
        data=_form(
            model=model,
            target=_targets(target),
            layer=layer,
            params=dict(params) if params else None,
        ),
        files={"image": image_file(image, filename)} if image is not None else None,
    )


def models() -> Call[list[results.ModelSummary]]:
    def parse(body: Any) -> list[results.ModelSummary]:
        items = body.get("models", []) if isinstance(body, dict) else body
        return [results.ModelSummary.from_json(item) for item in items]

    return Call("GET", "/v1/models", parse)


def model(name: str) -> Call[results.ModelInfo]:
    return Call("GET", f"/v1/models/{quote(name, safe='')}", results.ModelInfo.from_json)


def methods() -> Call[list[results.MethodInfo]]:
    def parse(body: Any) -> list[results.MethodInfo]:
        items = body.get("methods", []) if isinstance(body, dict) else body
        return [results.MethodInfo.from_json(item) for item in items]

    return Call("GET", "/v1/methods", parse)


def json_get(path: str) -> Call[dict[str, Any]]:
    return Call("GET", path, lambda body: body if isinstance(body, dict) else {"value": body})
