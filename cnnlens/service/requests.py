"""The v1 requests, resolved once, as FastAPI dependencies.

A route declares the resolved request it answers (`ExplainDep`, `CompareDep`, `AuditDep`, or
a method route's `single_request(method)`). Its dependency reads the form fields once, looks
the model up once, and checks the methods (known, able to explain this model), their params,
the layer (named once, its default filled in once, by `plan_run`) and the targets. The budget,
the queue, the worker and the rendering then take that object and check nothing again.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Depends, File, Form, Request, UploadFile
from PIL import Image
from pydantic import ValidationError

from cnnlens.api.forms import (
    COMPARE_METHODS,
    DEFAULT_METHOD,
    parse_box,
    parse_outputs,
    parse_overlay_format,
    split_list,
)
from cnnlens.audit.config import AuditConfig, check_methods, check_model
from cnnlens.compare.engine import check_methods as check_compare_methods
from cnnlens.compare.options import DEFAULT_SCORES, SCORES, CompareOptions, parse_options
from cnnlens.errors import InvalidParamsError, TargetError
from cnnlens.explain import input_region
from cnnlens.imageio import lossy_format
from cnnlens.methods.base import Method, get_method
from cnnlens.methods.run import RunPlan, plan_run
from cnnlens.models.loaded import LoadedModel
from cnnlens.models.regions import Box
from cnnlens.service.deps import SettingsDep, StateDep, wants_png
from cnnlens.service.errors import NotAcceptableError
from cnnlens.service.forms import (
    layer_field,
    parse_method_params,
    parse_methods,
    parse_params_by_method,
    parse_targets,
)
from cnnlens.service.handlers import OwnRoute, SingleRun, own_route
from cnnlens.service.runtime.budget import MethodsPlan, Rendered
from cnnlens.service.settings import Limits

ModelField = Annotated[str | None, Form(description="a served model; default: the default")]
LayerField = Annotated[str | None, Form(description="layer for layer-based methods")]
ImageField = Annotated[UploadFile, File(description="JPEG, PNG, WebP, BMP, GIF or TIFF")]
MAX_COMPARE_IMAGES = 8  # per request: each image costs (steps + 1) x 2 forwards a method, or more


def resolve_run(
    model: LoadedModel, methods: list[Method], params_text: str | None, layer: str | None
) -> RunPlan:
    """The methods with their params (a JSON object keyed by method), able to explain the
    model at the layer (checked, the default filled in): 422 otherwise."""
    params = parse_params_by_method(params_text, methods)
    return plan_run(model, [(method, params[method.name]) for method in methods], layer)


def one_target(values: list[str] | None, model: LoadedModel, limits: Limits) -> int | None:
    """A route that explains one class: the class index, or None for the top-1."""
    targets = parse_targets(values, model, limits.max_targets)
    if len(targets) > 1:
        raise TargetError("this route explains one target at a time")
    return targets[0] if targets else None


def input_box(model: LoadedModel, picture: Image.Image, box: Box | None) -> Box | None:
    """A region box in the upload's pixels -> input pixels (422 outside the image, on a
    classifier, or outside a center crop)."""
    region = input_region(model, picture, box)
    assert region is None or isinstance(region, tuple)
    return region


@dataclass(frozen=True)
class ExplainRequest:
    """POST /v1/explain, resolved."""

    model: LoadedModel
    plan: RunPlan  # methods, params, the layer
    targets: tuple[int, ...]  # distinct class indices; empty: the top-1
    region: Box | None  # segmentation: in the upload's pixels
    outputs: tuple[str, ...]
    overlay_format: str | None  # png, jpeg or webp as asked; None: like the upload
    png: bool  # Accept: image/png, answered with the overlay itself
    max_side: int | None
    image: UploadFile

    def image_format(self, upload: Image.Image) -> str:
        """The overlay's format: as asked, else like the decoded `upload` (jpeg for a JPEG,
        webp for a lossy WebP, else png; png for Accept: image/png). Heatmaps are PNGs."""
        if self.overlay_format is not None:
            return self.overlay_format
        return parse_overlay_format(None, None if self.png else lossy_format(upload))

    @property
    def draft(self) -> int | None:
        """A JPEG decodes at the smallest DCT scale that keeps both sides >= this: with
        max_side, the model's input comes from the reduced decode (never below its size)."""
        source_side = self.model.preprocessing.source_side
        return max(self.max_side, source_side) if self.max_side else None

    def budget(self, width: int, height: int) -> MethodsPlan:
        """What the budget checks: the run on every target, rendered at width x height."""
        shown = Rendered(width, height, ("overlay",) if self.png else self.outputs)
        return MethodsPlan(self.plan, max(1, len(self.targets)), rendered=shown)


async def explain_request(
    request: Request,
    state: StateDep,
    settings: SettingsDep,
    image: ImageField,
    model: ModelField = None,
    method: Annotated[
        list[str] | None,
        Form(description=f"method names, repeated or comma-separated; default {DEFAULT_METHOD}"),
    ] = None,
    target: Annotated[
        list[str] | None,
        Form(description="class indices or labels, one per field; default: top-1"),
    ] = None,
    layer: LayerField = None,
    params: Annotated[
        str | None, Form(description='JSON object keyed by method, e.g. {"occlusion": {...}}')
    ] = None,
    output: Annotated[str | None, Form(description="comma list of overlay, heatmap, array")] = None,
    region: Annotated[
        str | None,
        Form(
            description="segmentation models: x0,y0,x1,y1 in the uploaded image's pixels, the "
            "region whose target logits are explained; default: the pixels predicted as it"
        ),
    ] = None,
    overlay_format: Annotated[
        str | None,
        Form(
            description="png, jpeg or webp: the overlay's format; default: like the upload "
            "(jpeg for a JPEG, webp for a lossy WebP, else png; png with Accept: image/png). "
            "Heatmaps are palette PNGs"
        ),
    ] = None,
    max_side: Annotated[
        int | None,
        Form(
            ge=1,
            le=16384,
            description="maps and images at most this many pixels a side (the photo scaled "
            "down; a JPEG decodes at a reduced DCT scale); default: the photo's own size",
        ),
    ] = None,
) -> ExplainRequest:
    loaded = state.model(model)
    methods = parse_methods(method)
    outputs = parse_outputs(output)
    targets = parse_targets(target, loaded, settings.limits.max_targets)
    plan = resolve_run(loaded, methods, params, layer_field(layer))
    box = parse_box(region)
    png = wants_png(request)
    if png and len(methods) != 1:
        raise NotAcceptableError("Accept: image/png answers one method; ask for JSON instead")
    # Empty: like the upload, known once decoded; a bad value is a 422 before that.
    chosen = parse_overlay_format(overlay_format) if (overlay_format or "").strip() else None
    if box is not None and max_side:
        raise InvalidParamsError(
            "region is in the uploaded image's pixels: send it without max_side",
            code="bad_region",
        )
    return ExplainRequest(loaded, plan, tuple(targets), box, outputs, chosen, png, max_side, image)


ExplainDep = Annotated[ExplainRequest, Depends(explain_request)]


@dataclass(frozen=True)
class SingleRequest:
    """POST /v1/<method>, resolved: the run and how its route answers it."""

    model: LoadedModel
    run: SingleRun
    answer: OwnRoute
    image: UploadFile | None

    def budget(self) -> MethodsPlan:
        return MethodsPlan(self.run.plan)


def single_request(method: Method) -> Callable[..., Coroutine[Any, Any, SingleRequest]]:
    """The dependency that resolves a request to `method`'s own route: its signature has the
    form fields the method uses (`image`, `target`, `layer`), read from the registry."""
    answer = own_route(method.name)

    async def resolve(state: Any, settings: Any, **form: Any) -> SingleRequest:
        loaded = state.model(form.get("model"))
        params = parse_method_params(form.get("params"), method)
        target = one_target(form.get("target"), loaded, settings.limits)
        plan = plan_run(loaded, [(method, params)], layer_field(form.get("layer")))
        run = answer.check(loaded, SingleRun(plan, target))
        return SingleRequest(loaded, run, answer, form.get("image"))

    def param(name: str, annotation: Any, default: Any = inspect.Parameter.empty) -> Any:
        kind = inspect.Parameter.KEYWORD_ONLY
        return inspect.Parameter(name, kind, annotation=annotation, default=default)

    fields = [param("state", StateDep), param("settings", SettingsDep)]
    if method.uses_image:
        fields.append(param("image", ImageField))
    fields.append(param("model", ModelField, None))
    if method.uses_target:
        target = Form(description="a class index or label (one); default: top-1")
        fields.append(param("target", Annotated[list[str] | None, target], None))
    if method.uses_layer:
        layer = Form(description="a layer name; default: the model's")
        fields.append(param("layer", Annotated[str | None, layer], None))
    params = Form(description="JSON object: the method's params")
    fields.append(param("params", Annotated[str | None, params], None))
    resolve.__signature__ = inspect.Signature(fields)  # type: ignore[attr-defined]
    return resolve


@dataclass(frozen=True)
class CompareRequest:
    """POST /v1/compare, resolved."""

    model: LoadedModel
    plan: RunPlan
    target: int | None  # one class for every image; None: each image's top-1
    region: Box | None  # segmentation: in each image's pixels
    options: CompareOptions
    images: list[UploadFile]

    @property
    def names(self) -> list[str]:
        return [upload.filename or f"image-{i}" for i, upload in enumerate(self.images)]

    @property
    def params(self) -> dict[str, dict[str, Any]]:
        return {method.name: params.model_dump() for method, params in self.plan.methods}


OptionField = Annotated[str | None, Form()]


async def compare_request(
    state: StateDep,
    settings: SettingsDep,
    image: Annotated[
        list[UploadFile],
        File(description=f"one to {MAX_COMPARE_IMAGES} images (repeat the field)"),
    ],
    model: ModelField = None,
    method: Annotated[
        list[str] | None,
        Form(
            description=f"methods, repeated or comma-separated; default {','.join(COMPARE_METHODS)}"
        ),
    ] = None,
    target: Annotated[
        list[str] | None, Form(description="one class index or label for every image; top-1")
    ] = None,
    layer: LayerField = None,
    params: Annotated[str | None, Form(description="JSON object keyed by method")] = None,
    region: Annotated[
        str | None,
        Form(
            description="segmentation models: x0,y0,x1,y1 in each image's pixels, the region "
            "the target's score is taken over; default: the pixels predicted as the target"
        ),
    ] = None,
    scores: Annotated[
        str | None,
        Form(
            description=f"comma list of {', '.join(SCORES)}, or none; default "
            f"{','.join(DEFAULT_SCORES)}"
        ),
    ] = None,
    steps: Annotated[
        str | None, Form(description="steps per perturbation curve (16; 224: RISE's schedule)")
    ] = None,
    baseline: Annotated[
        str | None,
        Form(description="rise (default: the RISE authors' protocol), mean or blur"),
    ] = None,
    blur_sigma: Annotated[str | None, Form(description="baseline blur: sigma, pixels")] = None,
    n_perturb_samples: Annotated[
        str | None, Form(description="infidelity / sensitivity_max: perturbed inputs (10)")
    ] = None,
    perturb_radius: Annotated[
        str | None, Form(description="sensitivity_max: uniform perturbation radius (0.02)")
    ] = None,
    infidelity_noise: Annotated[
        str | None, Form(description="infidelity: Gaussian perturbation's std (0.003)")
    ] = None,
    road_percentiles: Annotated[
        str | None, Form(description="road: comma list of percentiles (10,20,...,90)")
    ] = None,
    top_k: Annotated[str | None, Form(description="share of pixels for top-k IoU (0.1)")] = None,
    stages: Annotated[str | None, Form(description="blocks randomized, top down (3)")] = None,
    seed: Annotated[str | None, Form(description="randomization / tie-break seed (0)")] = None,
    ssim: Annotated[str | None, Form(description="true: also SSIM under randomization")] = None,
    shared_scale: Annotated[str | None, Form(description="true: one colour scale")] = None,
    random_baseline: Annotated[
        str | None, Form(description="true: also score a seeded random map")
    ] = None,
) -> CompareRequest:
    loaded = state.model(model)
    names = check_compare_methods(split_list(method) or list(COMPARE_METHODS))
    targets = parse_targets(target, loaded, settings.limits.max_targets)
    if len(targets) > 1:
        raise TargetError("compare explains one target (the same for every image)")
    plan = resolve_run(loaded, [get_method(name) for name in names], params, layer_field(layer))
    box = parse_box(region)
    options = parse_options(
        scores=_score_list(scores),
        steps=steps, baseline=baseline, blur_sigma=blur_sigma, top_k=top_k, stages=stages,
        seed=seed, ssim=ssim, shared_scale=shared_scale, random_baseline=random_baseline,
        n_perturb_samples=n_perturb_samples, perturb_radius=perturb_radius,
        infidelity_noise=infidelity_noise,
        road_percentiles=None if road_percentiles is None else split_list([road_percentiles]),
    )  # fmt: skip
    if not 1 <= len(image) <= MAX_COMPARE_IMAGES:
        raise InvalidParamsError(
            f"compare takes 1 to {MAX_COMPARE_IMAGES} images, got {len(image)}"
        )
    return CompareRequest(loaded, plan, targets[0] if targets else None, box, options, image)


def _score_list(value: str | None) -> list[str] | None:
    """Comma list of scores; "none" (or an empty field) asks for agreement only."""
    if value is None:
        return None
    names = split_list([value])
    return [] if names in ([], ["none"]) else names


CompareDep = Annotated[CompareRequest, Depends(compare_request)]


@dataclass(frozen=True)
class AuditRequest:
    """POST /v1/audits, resolved: the job's config and what each of its batches runs."""

    model: LoadedModel
    config: AuditConfig
    plan: RunPlan


async def audit_request(
    state: StateDep,
    settings: SettingsDep,
    model: ModelField = None,
    method: Annotated[
        list[str] | None, Form(description=f"heatmap methods; default {DEFAULT_METHOD}")
    ] = None,
    batch_size: Annotated[int, Form(ge=1, le=256)] = 8,
    top_k: Annotated[int, Form(ge=1, le=20)] = 5,
    low_confidence: Annotated[float, Form(ge=0, le=1)] = 0.5,
    min_box_energy: Annotated[float, Form(ge=0, le=1)] = 0.5,
    fragility: Annotated[bool, Form(description="PGD epsilon ladder (slow)")] = False,
    features: Annotated[
        bool, Form(description="feature space: map, neighbours, near-duplicates, label issues")
    ] = True,
    feature_layer: Annotated[
        str | None, Form(description="feature layer (default: the classifier's input)")
    ] = None,
    map_method: Annotated[
        Literal["umap", "pca", "tsne"], Form(alias="map", description="2-D map")
    ] = "umap",
    exemplars: Annotated[
        list[str] | None, Form(description="layers whose channels get their top-k images")
    ] = None,
    exemplars_k: Annotated[int, Form(ge=1, le=100, description="exemplars per channel")] = 9,
    index_exact_max: Annotated[
        int, Form(ge=1, description="past this many images the neighbour index is IVF")
    ] = 200_000,
) -> AuditRequest:
    loaded = state.model(model)  # 404 for a model not served, 503 while loading
    try:
        config = AuditConfig.model_validate(
            {
                "model": loaded.name,
                "methods": method or [DEFAULT_METHOD],
                "batch_size": batch_size,
                "top_k": top_k,
                "low_confidence": low_confidence,
                "min_box_energy": min_box_energy,
                "fragility": fragility,
                "max_pixels": settings.limits.max_pixels,
                "features": {
                    "enabled": features,
                    "layer": feature_layer,
                    "map": map_method,
                    "exemplars": exemplars or [],
                    "exemplars_k": exemplars_k,
                    "index_exact_max": index_exact_max,
                },
            }
        )
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise InvalidParamsError(f"invalid audit options: {problems}") from None
    check_methods(config)
    return AuditRequest(loaded, config, check_model(config, loaded))


AuditDep = Annotated[AuditRequest, Depends(audit_request)]
