"""POST /v1/explain's work: its rows batched on the model's worker, its body rendered after.

Requests that share methods, params, layer and target mode are stacked into one `run_plan`
call (rows: each image repeated once per target), and the result is split back into
per-request rows. Rendering is `cnnlens.explain`'s, at the image's own size, through the one
body builder (`cnnlens.api.bodies`).
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import torch
from PIL import Image

from cnnlens.api import models as api
from cnnlens.api.bodies import explain_response
from cnnlens.api.codecs import image_bytes
from cnnlens.api.models import ClassScore
from cnnlens.explain import Explanation, explanations_from_run, predictions_of
from cnnlens.methods.base import Method, MethodOutput, row_extras
from cnnlens.methods.run import RunPlan, run_plan
from cnnlens.models.loaded import LoadedModel
from cnnlens.models.outputs import ModelOutput, detached, take
from cnnlens.models.regions import Box
from cnnlens.service.forms import params_key
from cnnlens.service.runtime.abort import AbortSignal
from cnnlens.targets import BoxTarget, Target, as_target

# Outputs with one row per sample (images from random starts and shared jitter, and weights,
# are not per-sample rows of a batch).
_BATCHABLE_OUTPUTS = ("map", "activations")


@dataclass(frozen=True)
class ExplainInput:
    """One request's work on the worker: its resolved run, input and targets."""

    plan: RunPlan
    x: torch.Tensor  # (1, 3, H, W) preprocessed
    targets: tuple[int, ...] = ()  # empty: the top-1 prediction
    region: Box | None = None  # segmentation: the region in input pixels
    # Detectors: each row's box in input pixels, `targets` their labels (empty: the label of
    # the detection each box matches).
    boxes: tuple[Box, ...] | None = None

    @property
    def rows(self) -> int:
        return max(1, len(self.boxes) if self.boxes is not None else len(self.targets))

    @property
    def batch_key(self) -> Hashable | None:
        """Equal keys may share a batch (None: this request runs alone)."""
        if not all(_batch_invariant(method) for method, _ in self.plan.methods):
            return None
        methods = tuple((method.name, params_key(params)) for method, params in self.plan.methods)
        return methods, self.plan.layer, bool(self.targets), self.region


def _batch_invariant(method: Method) -> bool:
    """Whether a method's row for one image is the same whatever else shares its batch.
    Seeded methods (SmoothGrad's noise, random starts) draw for the whole batch at once, so
    their rows depend on the batch's make-up: they run alone, reproducible per request."""
    return method.produces in _BATCHABLE_OUTPUTS and "seed" not in method.Params.model_fields


@dataclass
class ExplainRows:
    """One request's share of a batched run."""

    logits: ModelOutput  # (k, K), or a detector's detections of its k rows
    target: Target  # what its k rows explained
    layer: str
    outputs: dict[str, MethodOutput]  # maps (k, C, H, W) or per-method shapes
    elapsed_ms: dict[str, float]
    batch_size: int  # requests in the batch this came from


def run_explain_batch(model: LoadedModel, inputs: Sequence[ExplainInput]) -> list[ExplainRows]:
    """One run_plan over every request's rows (on the model's worker thread)."""
    first = inputs[0]
    x = torch.cat([item.x.expand(item.rows, -1, -1, -1) for item in inputs])  # (N, 3, H, W)
    classes = [t for item in inputs for t in item.targets] if first.targets else None
    if first.boxes is not None:  # a detector's: each request brings its rows' boxes
        boxes = [list(box) for item in inputs for box in item.boxes or ()]
        target: Target = BoxTarget(classes, boxes)
    else:
        target = as_target(classes, model.head, x.shape[0], first.region)
    result = run_plan(model, x, first.plan, target)
    total = x.shape[0]
    split: list[ExplainRows] = []
    start = 0
    for item in inputs:
        rows = slice(start, start + item.rows)
        outputs = {
            name: MethodOutput(
                output.map[rows] if output.map.shape[0] == total else output.map,
                row_extras(output.extras, rows, total),
            )
            for name, output in result.outputs.items()
        }
        share = item.rows / total
        split.append(
            ExplainRows(
                logits=detached(take(result.logits, rows), "cpu"),
                target=result.target.take(rows),
                layer=result.layer,
                outputs=outputs,
                elapsed_ms={name: ms * share for name, ms in result.elapsed_ms.items()},
                batch_size=len(inputs),
            )
        )
        start += item.rows
    return split


def explanations_for(
    model: LoadedModel, picture: Image.Image, rows: ExplainRows, method_names: Sequence[str]
) -> tuple[list[Explanation], list[ClassScore]]:
    """The same Explanation objects `cnnlens.explain` builds, from one request's rows."""
    explanations = explanations_from_run(model, picture, rows, method_names)
    framing = model.preprocessing.framing(picture.width, picture.height)
    return explanations, predictions_of(model, take(rows.logits, slice(0, 1)), 5, framing)


def render_explain_response(
    model: LoadedModel,
    picture: Image.Image,
    rows: ExplainRows,
    method_names: Sequence[str],
    outputs: Sequence[str],
    started: float,
    abort: AbortSignal | None = None,
    image_format: str = "png",
) -> api.ExplainResponse:
    """The body of POST /v1/explain (CPU work: run it on a thread); `abort` stops it
    between two explanations' encodings."""
    explanations, predictions = explanations_for(model, picture, rows, method_names)
    size = api.ImageSize(width=picture.width, height=picture.height)
    elapsed = (time.monotonic() - started) * 1000
    encoded = explanations if abort is None else abort.each(explanations)
    return explain_response(
        model.name, size, predictions, encoded, outputs, elapsed, model.was_training,
        image_format,
    )  # fmt: skip


def render_overlay_png(
    model: LoadedModel,
    picture: Image.Image,
    rows: ExplainRows,
    method_name: str,
    abort: AbortSignal | None = None,
    image_format: str = "png",
) -> tuple[bytes, Explanation]:
    """The first explanation's overlay PNG, or `image_format` (Accept: image/png), and that
    explanation (what the answer's headers name)."""
    explanations, _ = explanations_for(model, picture, rows, [method_name])
    if abort is not None:
        abort.check()
    return image_bytes(explanations[0].overlay_pixels(), image_format), explanations[0]
