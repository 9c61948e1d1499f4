"""Requests and answers of the REST API v1, shared by Client and AsyncClient (no I/O here)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
import numpy as np
from PIL import Image

from cnnlens.client import results
from cnnlens.client.errors import CnnlensConnectionError, error_from_response

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
    answers: Mapping[int, T] = field(default_factory=dict)  # error statuses that are a result

    def request(self, auth: Mapping[str, str]) -> dict[str, Any]:
        """The keyword arguments of `httpx.Client.request` (and of the async one)."""
        return {
            "method": self.method,
            "url": self.path,
            "data": self.data,
            "files": self.files,
            "headers": {**auth, **self.headers},
        }

    def result(self, response: httpx.Response) -> T:
        """The typed result of the answer; an error answer raises CnnlensAPIError."""
        status, content = response.status_code, response.content
        if status in self.answers:
            return self.answers[status]
        if status >= 400:
            headers = {k.lower(): v for k, v in response.headers.items()}
            raise error_from_response(status, content, headers)
        return self.parse(content if self.raw else json.loads(content))


@contextmanager
def transport_errors() -> Iterator[None]:
    """Turn httpx's failures to get an answer into CnnlensConnectionError."""
    try:
        yield
    except httpx.TimeoutException as error:
        raise CnnlensConnectionError("timeout", f"no answer in time: {error}") from error
    except httpx.TransportError as error:
        raise CnnlensConnectionError("connection_error", str(error) or repr(error)) from error


def auth_headers(api_key: str | None) -> dict[str, str]:
    return {"X-API-Key": api_key} if api_key else {}


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


def _request_form(
    *,
    model: str | None,
    target: TargetInput,
    layer: str | None,
    params: Mapping[str, Any] | None,
    method: str | list[str] | None = None,
) -> FormData:
    """The form fields most routes share: which model, method(s), target, layer, params."""
    return _form(
        model=model,
        method=method,
        target=_targets(target),
        layer=layer,
        params=dict(params) if params else None,
    )


def _method_list(methods: str | Sequence[str]) -> list[str]:
    values = [methods] if isinstance(methods, str) else list(methods)
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def explain(
    image: ImageInput,
    methods: str | Sequence[str],
    *,
    model: str | None,
    target: TargetInput,
    layer: str | None,
    params: Mapping[str, Mapping[str, Any]] | None,
    output: str | Sequence[str],
    filename: str | None,
) -> Call[results.ExplainResult]:
    """POST /v1/explain, answered in JSON."""
    outputs = _method_list(output)
    unknown = sorted(set(outputs) - set(OUTPUTS))
    if unknown:
        raise ValueError(f"unknown output {unknown}; choose from {', '.join(OUTPUTS)}")
    form = _request_form(
        model=model, method=_method_list(methods), target=target, layer=layer, params=params
    )
    return Call(
        "POST",
        "/v1/explain",
        results.ExplainResult.from_json,
        data={**form, "output": ",".join(outputs)},
        files={"image": image_file(image, filename)},
    )


def _png(content: bytes) -> Image.Image:
    picture = Image.open(io.BytesIO(content))
    picture.load()
    return picture


def explain_png(
    image: ImageInput,
    method: str,
    *,
    model: str | None,
    target: int | str | None,
    layer: str | None,
    params: Mapping[str, Any] | None,
    filename: str | None,
) -> Call[Image.Image]:
    """POST /v1/explain with `Accept: image/png`: one method's overlay."""
    return Call(
        "POST",
        "/v1/explain",
        _png,
        data=_request_form(
            model=model,
            method=method,
            target=target,
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
    methods: str | Sequence[str],
    *,
    model: str | None,
    target: int | str | None,
    layer: str | None,
    params: Mapping[str, Mapping[str, Any]] | None,
    scores: str | Sequence[str] | None,
    steps: int | None,
    options: Mapping[str, Any] | None,
) -> Call[results.CompareResult]:
    """POST /v1/compare; `options` are more of its form fields (baseline, top_k, ...)."""
    uploads = images if isinstance(images, list) else [images]
    if not uploads:
        raise ValueError("compare needs at least one image")
    form = _request_form(
        model=model, method=_method_list(methods), target=target, layer=layer, params=params
    )
    for key, value in {**(options or {}), "scores": scores, "steps": steps}.items():
        if value is not None:
            form[key] = _option_text(value)
    return Call(
        "POST",
        "/v1/compare",
        results.CompareResult.from_json,
        data=form,
        files=[("image", image_file(upload)) for upload in uploads],
    )


@dataclass(frozen=True)
class SingleMethodRoute(Generic[T]):
    """A route of one method (its params, an image for most) and its typed answer."""

    path: str
    parse: Callable[[Any], T]

    def __call__(
        self,
        image: ImageInput | None,
        *,
        model: str | None,
        target: TargetInput = None,
        layer: str | None = None,
        params: Mapping[str, Any] | None,
        filename: str | None = None,
    ) -> Call[T]:
        return Call(
            "POST",
            self.path,
            self.parse,
            data=_request_form(model=model, target=target, layer=layer, params=params),
            files={"image": image_file(image, filename)} if image is not None else None,
        )


adversarial = SingleMethodRoute("/v1/adversarial", results.AdversarialResult.from_json)
activation_max = SingleMethodRoute("/v1/activation-max", results.ActivationMaxResult.from_json)
feature_maps = SingleMethodRoute("/v1/feature-maps", results.FeatureMapsResult.from_json)
filters = SingleMethodRoute("/v1/filters", results.FiltersResult.from_json)


def _listing(key: str, item: Callable[[Any], T]) -> Callable[[Any], list[T]]:
    """A parser of `{key: [...]}` (or a bare list) into typed items."""

    def parse(body: Any) -> list[T]:
        items = body.get(key, []) if isinstance(body, dict) else body
        return [item(entry) for entry in items]

    return parse


def models() -> Call[list[results.ModelSummary]]:
    return Call("GET", "/v1/models", _listing("models", results.ModelSummary.from_json))


def model(name: str) -> Call[results.ModelInfo]:
    return Call("GET", f"/v1/models/{quote(name, safe='')}", results.ModelInfo.from_json)


def methods() -> Call[list[results.MethodInfo]]:
    return Call("GET", "/v1/methods", _listing("methods", results.MethodInfo.from_json))


def _json_object(body: Any) -> dict[str, Any]:
    return body if isinstance(body, dict) else {"value": body}


def alive() -> Call[dict[str, Any]]:
    return Call("GET", "/healthz", _json_object)


def ready() -> Call[dict[str, Any] | None]:
    """GET /readyz: its body, or None for a 503 ("not ready" is an answer, not an error)."""
    return Call("GET", "/readyz", _json_object, answers={503: None})


def health(alive_body: dict[str, Any], ready_body: dict[str, Any] | None) -> results.Health:
    """The answers of `alive()` and `ready()` as one Health."""
    if ready_body is None:
        return results.Health(alive=True, ready=False, data=alive_body)
    return results.Health(alive=True, ready=True, data={**alive_body, **ready_body})
