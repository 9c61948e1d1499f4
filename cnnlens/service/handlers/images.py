"""The handlers of the methods that make an image: adversarial inputs (their upload attacked
and saved as 8-bit pixels) and activation maximization (an image from nothing)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from cnnlens.api import models as api
from cnnlens.api.codecs import b64
from cnnlens.api.png import png_bytes
from cnnlens.errors import IncompatibleModelError, InvalidParamsError
from cnnlens.methods.adversarial import AdversarialParams
from cnnlens.methods.adversarial_image import (
    AdversarialImage,
    adversarial_image,
    saved_output_params,
)
from cnnlens.methods.run import RunResult
from cnnlens.models.loaded import LoadedModel
from cnnlens.service.forms import parse_class
from cnnlens.service.handlers.single import (
    SingleRun,
    class_score,
    elapsed_ms,
    upload_size,
)


def check_adversarial(model: LoadedModel, run: SingleRun) -> SingleRun:
    """A budget an 8-bit image can hold, and a known class to aim for."""
    params = saved_output_params(run.params)  # epsilon >= 1 level
    if params.adversarial_target is not None:
        parse_class(params.adversarial_target, model)  # an unknown class: 422 before any work
    return run.with_params(params)


def run_adversarial(model: LoadedModel, runs: Sequence[SingleRun]) -> list[AdversarialImage]:
    """Worker side: the saved adversarial image of each run (its upload, params and target)."""
    results = []
    for run in runs:
        assert run.picture is not None and isinstance(run.params, AdversarialParams)
        results.append(adversarial_image(model, run.picture, run.params, run.target))
    return results


def render_adversarial(
    model: LoadedModel, run: SingleRun, result: AdversarialImage, started: float
) -> tuple[api.AdversarialResponse, bytes]:
    """JSON body and the adversarial PNG (at `output_size`, the upload's by default)."""
    body = api.AdversarialResponse(
        model=model.name,
        image=upload_size(run),
        **result.summary(),
        adversarial_png=b64(result.png),
        perturbation_png=b64(png_bytes(result.perturbation_image())),
        elapsed_ms=elapsed_ms(started),
    )
    return body, result.png


def check_activation_max(model: LoadedModel, run: SingleRun) -> SingleRun:
    """A class or a channel to maximize; a channel of a (C, h, w) layer, not a crash."""
    channel = getattr(run.params, "channel", None)
    if run.target is None and channel is None:
        raise InvalidParamsError("give a target class, or params.channel to maximize a channel")
    if channel is not None:
        info = model.layers.get(run.layer)
        shape = None if info is None else info.output_shape
        if shape is None or len(shape) != 3:
            raise IncompatibleModelError(
                f"maximizing a channel needs a layer with (C, h, w) output; {run.layer!r} "
                f"has {shape}"
            )
    return run


def render_activation_max(
    model: LoadedModel, run: SingleRun, result: RunResult, started: float
) -> tuple[api.ActivationMaxResponse, bytes]:
    output = result.outputs["activation_max"]
    extras = output.extras
    if not (torch.isfinite(output.map).all() and math.isfinite(float(extras["score"][0]))):
        raise InvalidParamsError(
            "activation maximization diverged (non-finite values); lower params.lr or params.l2"
        )
    png = png_bytes(model.preprocessing.to_image(output.map[0]))
    target = int(result.targets[0])
    channel = getattr(run.params, "channel", None)
    top1 = int(extras["top1_class"][0])
    body = api.ActivationMaxResponse(
        model=model.name,
        target=class_score(model, target, float(extras["probability"][0]))
        if run.target is not None or channel is None
        else None,
        layer=result.layer if channel is not None else None,
        channel=channel,
        score=float(extras["score"][0]),
        top1=class_score(model, top1, float(extras["top1_probability"][0])),
        image_png=b64(png),
        elapsed_ms=elapsed_ms(started),
    )
    return body, png
