"""One method on one image, for the routes of methods with results of their own: the resolved
run (`SingleRun`), how a route answers it (`OwnRoute`) and the generic answer of any method
without a handler of its own (`render_method`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from PIL import Image
from pydantic import BaseModel

from cnnlens import render
from cnnlens.api import models as api
from cnnlens.api.bodies import score_of
from cnnlens.api.codecs import b64
from cnnlens.api.png import png_bytes
from cnnlens.methods.base import Method, MethodParams
from cnnlens.methods.run import RunPlan, RunResult, run_plan
from cnnlens.models.loaded import LoadedModel
from cnnlens.targets import ClassTarget


@dataclass
class SingleRun:
    """One method on one image (or on a blank input when the method needs none), resolved:
    the method with checked params and layer (`plan`) and the class asked for."""

    plan: RunPlan
    target: int | None  # None: the top-1 prediction
    picture: Image.Image | None = None  # the upload, when the method takes one
    x: torch.Tensor | None = None  # (1, 3, H, W) preprocessed, or None: a zero image

    @property
    def method(self) -> Method:
        return self.plan.methods[0][0]

    @property
    def params(self) -> MethodParams:
        return self.plan.methods[0][1]

    @property
    def layer(self) -> str:
        return self.plan.layer

    def with_params(self, params: MethodParams) -> SingleRun:
        return replace(self, plan=RunPlan(((self.method, params),), self.layer))


def run_single(model: LoadedModel, runs: Sequence[SingleRun]) -> list[RunResult]:
    """Worker side: never batched (random starts and jitter depend on the batch)."""
    results = []
    for run in runs:
        x = run.x if run.x is not None else torch.zeros(1, 3, *model.input_size)
        target = ClassTarget(None if run.target is None else [run.target], model.head)
        results.append(run_plan(model, x, run.plan, target))
    return results


Render = Callable[[LoadedModel, SingleRun, Any, float], tuple[BaseModel, bytes]]


def _checked(model: LoadedModel, run: SingleRun) -> SingleRun:
    return run


@dataclass(frozen=True)
class OwnRoute:
    """How the service answers a method's own route (`api.method_route`), with the body
    `api.method_response` names."""

    render: Render  # (model, run, worker result, started) -> body and its main PNG
    check: Callable[[LoadedModel, SingleRun], SingleRun] = _checked  # 422s before any work
    work: Callable[[LoadedModel, Sequence[SingleRun]], list[Any]] = run_single  # worker side
    preprocess: bool = True  # whether `work` reads the preprocessed upload (`run.x`)


def class_score(model: LoadedModel, index: int, probability: float) -> api.ClassScore:
    return score_of(index, model.label_of(index), probability)


def elapsed_ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 3)


def image_size(picture: Image.Image | None) -> api.ImageSize | None:
    return None if picture is None else api.ImageSize(width=picture.width, height=picture.height)


def upload_size(run: SingleRun) -> api.ImageSize:
    """The size of the upload of a method that takes one."""
    size = image_size(run.picture)
    assert size is not None, f"{run.method.name} runs on an uploaded image"
    return size


def render_method(
    model: LoadedModel, run: SingleRun, result: RunResult, started: float
) -> tuple[api.MethodResponse, bytes]:
    """Any other method's result: a 3-channel image as pixels, else the channels' mean."""
    method = run.method
    raw = result.outputs[method.name].map[0].float().cpu()
    if method.produces == "image" and raw.ndim == 3 and raw.shape[0] == 3:
        picture = model.preprocessing.to_image(raw)
    else:
        plane = raw if raw.ndim == 2 else raw.reshape(-1, *raw.shape[-2:]).mean(dim=0)
        picture = render.heatmap_image(plane, "viridis")
    png = png_bytes(picture)
    probabilities = torch.softmax(result.logits[0].float(), dim=0)
    target = int(result.targets[0])
    body = api.MethodResponse(
        model=model.name,
        method=method.name,
        image=image_size(run.picture),
        layer=result.layer,
        target=class_score(model, target, float(probabilities[target]))
        if method.uses_target
        else None,
        shape=list(raw.shape),
        image_png=b64(png),
        elapsed_ms=elapsed_ms(started),
    )
    return body, png
