"""Requests and answers of the REST API v1, shared by Client and AsyncClient (no I/O here).

Each endpoint function is the one definition of a call: its signature, defaults and docstring
are those of `Client.<name>` and `AsyncClient.<name>`, which only send what it returns."""

from __future__ import annotations

import inspect
import io
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Generic, ParamSpec, TypedDict, TypeVar, Unpack
from urllib.parse import quote

import httpx
import numpy as np
from PIL import Image
from pydantic import BaseModel

from cnnlens.api import models as api
from cnnlens.api.forms import COMPARE_METHODS, DEFAULT_METHOD, OUTPUTS, split_list
from cnnlens.client import results
from cnnlens.client.errors import CnnlensConnectionError, error_from_response

T = TypeVar("T")
B = TypeVar("B", bound=BaseModel)
P = ParamSpec("P")

ImageInput = str | Path | bytes | Image.Image | np.ndarray
TargetInput = int | str | Sequence[int | str] | None
FormData = dict[str, str | list[str]]
# The one error code for "no server answers at that address" (client and CLI alike).
UNREACHABLE = "connection_error"


@dataclass
class Call(Generic[T]):
    """One HTTP request and how to read its successful answer."""

    method: str
    path: str
    parse: Callable[[Any], T]  # JSON body (or raw bytes when `raw`) -> result
    data: FormData | None = None
    files: dict[str, tuple[str, Any, str]] | list[tuple[str, tuple[str, Any, str]]] | None = None
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
        raise CnnlensConnectionError(UNREACHABLE, str(error) or repr(error)) from error


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


def explain(
    image: ImageInput,
    methods: str | Sequence[str] = (DEFAULT_METHOD,),
    *,
    model: str | None = None,
    target: TargetInput = None,
    layer: str | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    output: str | Sequence[str] = OUTPUTS,
    filename: str | None = None,
    region: Sequence[float] | None = None,
    overlay_format: str | None = None,
    max_side: int | None = None,
    box: Sequence[float] | None = None,
) -> Call[results.ExplainResult]:
    """POST /v1/explain: one map per method and target, each raw map a numpy array
    (`ExplanationResult.map`, (H, W) or (3, H, W) at the image's size), the overlay and
    heatmap PIL images. Leave "array" out of `output` for smaller answers. `overlay_format`
    (png, jpeg or webp) chooses the overlay's format; by default the service answers like
    the upload (jpeg for a JPEG, webp for a lossy WebP, else png; heatmaps are PNG).
    `max_side` (maps and images at most this many pixels a side) for faster answers.
    `region` (segmentation models): (x0, y0, x1, y1) in the image's pixels.
    `box` (detectors): the detection to explain, (x0, y0, x1, y1) in the image's pixels
    (default: every detection above the model's score threshold)."""
    outputs = _names(output)
    unknown = sorted(set(outputs) - set(OUTPUTS))
    if unknown:
        raise ValueError(f"unknown output {unknown}; choose from {', '.join(OUTPUTS)}")
    form = _request_form(
        model=model, method=_names(methods), target=target, layer=layer, params=params
    )
    return Call(
        "POST",
        "/v1/explain",
        _parser(results.ExplainResult),
        data={
            **form,
            "output": ",".join(outputs),
            **_box_field("region", region),
            **_box_field("box", box),
            # sent only when not the default: older services know neither field
            **_form(overlay_format=overlay_format),
            **_form(max_side=max_side),
        },
        files={"image": image_file(image, filename)},
    )


def _box_field(name: str, box: Sequence[float] | None) -> dict[str, str]:
    """A region or box form field, "x0,y0,x1,y1" (absent when None)."""
    return {} if box is None else {name: ",".join(f"{float(v):g}" for v in box)}


def _names(values: str | Sequence[str]) -> list[str]:
    return split_list([values] if isinstance(values, str) else values)


def _png(content: bytes) -> Image.Image:
    picture = Image.open(io.BytesIO(content))
    picture.load()
    return picture


def explain_overlay(
    image: ImageInput,
    method: str = DEFAULT_METHOD,
    *,
    model: str | None = None,
    target: int | str | None = None,
    layer: str | None = None,
    params: Mapping[str, Any] | None = None,
    filename: str | None = None,
    box: Sequence[float] | None = None,
) -> Call[Image.Image]:
    """POST /v1/explain with `Accept: image/png`: the overlay itself (detectors: of the
    detection `box` chooses, else of the highest-scoring one)."""
    return Call(
        "POST",
        "/v1/explain",
        _png,
        data={
            **_request_form(
                model=model,
                method=method,
                target=target,
                layer=layer,
                params={method: dict(params)} if params else None,
            ),
            **_box_field("box", box),
        },
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
    methods: str | Sequence[str] = COMPARE_METHODS,
    *,
    model: str | None = None,
    target: int | str | None = None,
    layer: str | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    scores: str | Sequence[str] | None = None,
    steps: int | None = None,
    options: Mapping[str, Any] | None = None,
    region: Sequence[float] | None = None,
    box: Sequence[float] | None = None,
) -> Call[results.CompareResult]:
    """POST /v1/compare: methods side by side on one image (or a list of them), their
    pairwise agreement and faithfulness scores.

    Args:
        scores: any of "deletion", "insertion", "randomization", "infidelity",
            "sensitivity_max", "road", "sparseness", "complexity" (default: deletion
            and insertion); [] or "none" for the agreement only.
        steps: steps per perturbation curve (224 at 224 px: the RISE authors' schedule).
        options: further form fields of the route (baseline, blur_sigma, top_k, stages, seed,
            ssim, shared_scale, random_baseline, n_perturb_samples, perturb_radius,
            infidelity_noise, road_percentiles).
        region: segmentation models: (x0, y0, x1, y1) in each image's pixels.
        box: detectors: the detection compared, (x0, y0, x1, y1) in each image's pixels
            (default: each image's highest-scoring detection).
    """
    uploads = images if isinstance(images, list) else [images]
    if not uploads:
        raise ValueError("compare needs at least one image")
    form = _request_form(
        model=model, method=_names(methods), target=target, layer=layer, params=params
    )
    form.update(_box_field("region", region))
    form.update(_box_field("box", box))
    for key, value in {**(options or {}), "scores": scores, "steps": steps}.items():
        if value is not None:
            form[key] = _option_text(value)
    return Call(
        "POST",
        "/v1/compare",
        _parser(results.CompareResult),
        data=form,
        files=[("image", image_file(upload)) for upload in uploads],
    )


class MethodOptions(TypedDict, total=False):
    """The keyword arguments of a method's own route. Which ones a method reads: `methods()`
    (`uses_target`, `uses_layer`); `filename` names the uploaded image."""

    model: str | None
    target: TargetInput
    layer: str | None
    params: Mapping[str, Any] | None
    filename: str | None


def run_method(
    name: str, image: ImageInput | None = None, **options: Unpack[MethodOptions]
) -> Call[Any]:
    """POST /v1/<name>: an image, activation or weights method on its own route (see
    `methods()`: `route`, `uses_image`, `uses_target`, `uses_layer`)."""
    form = _request_form(
        model=options.get("model"),
        target=options.get("target"),
        layer=options.get("layer"),
        params=options.get("params"),
    )
    upload = image_file(image, options.get("filename")) if image is not None else None
    return Call(
        "POST",
        api.method_route(name),
        _parser(api.method_response(name)),
        data=form,
        files={"image": upload} if upload is not None else None,
    )


def adversarial(
    image: ImageInput, **options: Unpack[MethodOptions]
) -> Call[results.AdversarialResult]:
    """POST /v1/adversarial: an FGSM / PGD adversarial version of the image (options: model,
    target, params, filename)."""
    return run_method("adversarial", image, **options)


def activation_max(**options: Unpack[MethodOptions]) -> Call[results.ActivationMaxResult]:
    """POST /v1/activation-max: an image that maximizes a class score (or a channel; options:
    model, target, layer, params)."""
    return run_method("activation_max", **options)


def feature_maps(
    image: ImageInput, **options: Unpack[MethodOptions]
) -> Call[results.FeatureMapsResult]:
    """POST /v1/feature-maps: a layer's activations for the image (options: model, layer,
    params, filename)."""
    return run_method("feature_maps", image, **options)


def filters(**options: Unpack[MethodOptions]) -> Call[results.FiltersResult]:
    """POST /v1/filters: a layer's filters rendered as images (options: model, layer, params)."""
    return run_method("filters", **options)


def _parser(body: type[B]) -> Callable[[Any], B]:
    """A parser of `body` (a `cnnlens.api` model) into the client's result type for it."""
    return lambda data: results.parse(body, data)


def _listing(key: str, item: type[B]) -> Callable[[Any], list[B]]:
    """A parser of `{key: [...]}` (a list of `item` bodies) into the client's results."""
    return lambda data: [results.parse(item, entry) for entry in data.get(key, [])]


def models() -> Call[list[results.ModelSummary]]:
    """GET /v1/models."""
    return Call("GET", "/v1/models", _listing("models", results.ModelSummary))


def model(name: str) -> Call[results.ModelInfo]:
    """GET /v1/models/{name}: layers, default layer, compatibility, class names."""
    return Call("GET", f"/v1/models/{quote(name, safe='')}", _parser(results.ModelInfo))


def methods() -> Call[list[results.MethodInfo]]:
    """GET /v1/methods: every method with its params' JSON schema."""
    return Call("GET", "/v1/methods", _listing("methods", results.MethodInfo))


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


def _job_path(job_id: str, tail: str = "") -> str:
    return f"/v1/audits/{quote(job_id, safe='')}{tail}"


def submit_audit(
    archive: str | Path | bytes | BinaryIO,
    *,
    filename: str | None = None,
    labels: str | Path | bytes | None = None,
    boxes: str | Path | bytes | None = None,
    model: str | None = None,
    methods: str | Sequence[str] | None = None,
    options: Mapping[str, Any] | None = None,
) -> Call[dict[str, Any]]:
    """POST /v1/audits: a zip or tar of images (optional labels / boxes CSV) -> the new job
    (`id`, `status`, `progress`, `links`); `options` are more of its form fields."""
    files: dict[str, tuple[str, Any, str]] = {
        "archive": _upload(archive, filename or "images.zip", "application/octet-stream")
    }
    for field_name, value in (("labels", labels), ("boxes", boxes)):
        if value is not None:
            files[field_name] = _upload(value, f"{field_name}.csv", "text/csv")
    form = _form(model=model, method=_names(methods) if methods else None)
    for key, value in (options or {}).items():
        if value is not None:
            form[key] = _option_text(value)
    return Call("POST", "/v1/audits", _json_object, data=form, files=files)


def _upload(
    value: str | Path | bytes | BinaryIO, default_name: str, content_type: str
) -> tuple[str, Any, str]:
    """(filename, content, type); a file object is streamed, not read into memory."""
    if isinstance(value, bytes | bytearray):
        return default_name, bytes(value), content_type
    if not isinstance(value, str | Path):
        return default_name, value, content_type
    path = Path(value)
    return path.name, path.read_bytes(), content_type


def audit(job_id: str) -> Call[dict[str, Any]]:
    """GET /v1/audits/{id}: the job's status, progress and ETA."""
    return Call("GET", _job_path(job_id), _json_object)


def audits(limit: int | None = None, cursor: str | None = None) -> Call[dict[str, Any]]:
    """GET /v1/audits: a page of jobs, newest first (only this API key's where keys are on):
    `{"audits": [...], "next_cursor": ...}`; pass `next_cursor` as `cursor` for the next page
    (it is None on the last one)."""
    query = "&".join(
        f"{name}={quote(str(value), safe='')}"
        for name, value in (("limit", limit), ("cursor", cursor))
        if value is not None
    )
    return Call("GET", "/v1/audits" + (f"?{query}" if query else ""), _json_object)


def audit_results(job_id: str, format: str = "json") -> Call[Any]:
    """GET /v1/audits/{id}/results: the records as JSON (a dict), or the "jsonl" / "csv" bytes."""
    if format == "json":
        return Call("GET", _job_path(job_id, "/results"), _json_object)
    return Call("GET", _job_path(job_id, f"/results?format={quote(format)}"), bytes, raw=True)


def audit_report(job_id: str) -> Call[bytes]:
    """GET /v1/audits/{id}/report: the HTML report's bytes."""
    return Call("GET", _job_path(job_id, "/report"), bytes, raw=True)


def neighbors(job_id: str, image: ImageInput, k: int = 5) -> Call[list[dict[str, Any]]]:
    """POST /v1/audits/{id}/neighbors: the audited images nearest to `image` in the audit's
    feature space, nearest first: `name`, `index`, `distance` (1 - cosine), `label_name`,
    `predicted_name`."""

    def parse(body: Any) -> list[dict[str, Any]]:
        return list(_json_object(body)["neighbors"])

    return Call(
        "POST", _job_path(job_id, "/neighbors"), parse,
        data=_form(k=k), files={"image": image_file(image)},
    )  # fmt: skip


def audit_exemplars(job_id: str) -> Call[dict[str, Any]]:
    """GET /v1/audits/{id}/exemplars: `{layer: {channel: [{name, index, activation, box}]}}`,
    each channel's audited images by its largest activation (audits run with exemplar
    layers); GET .../exemplars/{layer}/{channel}.png is the sheet of their crops."""
    return Call("GET", _job_path(job_id, "/exemplars"), _json_object)


def delete_audit(job_id: str) -> Call[dict[str, Any]]:
    """DELETE /v1/audits/{id}: cancel a queued or running job (the job, `status` as it is: it
    stops after its batch in flight), or remove a finished, failed or cancelled one with its
    files (`{"id", "status", "deleted": True}`; a later `audit(id)` is a 404)."""
    return Call("DELETE", _job_path(job_id), _json_object)


# The calls Client and AsyncClient expose (each a method of both, sent as it is).
ENDPOINTS: tuple[Callable[..., Call[Any]], ...] = (
    explain,
    explain_overlay,
    compare,
    run_method,
    adversarial,
    activation_max,
    feature_maps,
    filters,
    models,
    model,
    methods,
    submit_audit,
    audit,
    audits,
    audit_results,
    audit_report,
    neighbors,
    audit_exemplars,
    delete_audit,
)


def method_signature(endpoint: Callable[..., Any]) -> inspect.Signature:
    """The endpoint's signature as a client method's: `self` first, the same parameters."""
    signature = inspect.signature(endpoint)
    this = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return signature.replace(parameters=[this, *signature.parameters.values()])


M = TypeVar("M", bound=Callable[..., Any])


def named_like(method: M, endpoint: Callable[..., Any]) -> M:
    """`method` with the endpoint's name, docstring and signature (for help() and IDEs)."""
    method.__name__ = method.__qualname__ = endpoint.__name__
    method.__doc__ = endpoint.__doc__
    method.__signature__ = method_signature(endpoint)  # type: ignore[attr-defined]
    return method
