"""POST /v1/explain's work: batched runs on the model's worker, rendering off the event loop.

Requests that share model, methods, params, layer and target mode are stacked into one
`run_methods` call (rows: each image repeated once per target), and the result is split back
into per-request rows. Rendering is the same as `cnnlens.explain`'s, at the image's own size.
"""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from cnnlens.explain import ClassScore, Explanation, _top_k, explanations_from_run
from cnnlens.methods.base import MethodOutput, get_method
from cnnlens.methods.run import run_methods
from cnnlens.models.loaded import LoadedModel

# Outputs with one row per sample (images from random starts and shared jitter, and weights,
# are not per-sample rows of a batch).
_BATCHABLE_OUTPUTS = ("map", "activations")


@dataclass(frozen=True)
class ExplainPlan:
    """What every request of one batch shares (hashable: it is the batch key)."""

    model: str
    methods: tuple[tuple[str, str], ...]  # (method name, canonical params JSON)
    layer: str | None
    explicit_targets: bool

    @property
    def batchable(self) -> bool:
        return all(_batch_invariant(name) for name, _ in self.methods)


def _batch_invariant(name: str) -> bool:
    """Whether a method's row for one image is the same whatever else shares its batch.
    Seeded methods (SmoothGrad's noise, random starts) draw for the whole batch at once, so
    their rows depend on the batch's make-up: they run alone, reproducible per request."""
    method = get_method(name)
    return method.produces in _BATCHABLE_OUTPUTS and "seed" not in method.Params.model_fields


@dataclass
class ExplainInput:
    plan: ExplainPlan
    x: torch.Tensor  # (1, 3, H, W) preprocessed
    targets: list[int]  # empty: the top-1 prediction

    @property
    def rows(self) -> int:
        return max(1, len(self.targets))


@dataclass
class ExplainRows:
    """One request's share of a batched run."""

    logits: torch.Tensor  # (k, K)
    targets: torch.Tensor  # (k,)
    layer: str
    outputs: dict[str, MethodOutput]  # maps (k, C, H, W) or per-method shapes
    elapsed_ms: dict[str, float]
    batch_size: int  # requests in the batch this came from


def run_explain_batch(model: LoadedModel, inputs: Sequence[ExplainInput]) -> list[ExplainRows]:
    """One run_methods over every request's rows (on the model's worker thread)."""
    plan = inputs[0].plan
    x = torch.cat([item.x.expand(item.rows, -1, -1, -1) for item in inputs])  # (N, 3, H, W)
    targets = [t for item in inputs for t in item.targets] if plan.explicit_targets else None
    methods = [
        (name, get_method(name).Params.model_validate_json(params)) for name, params in plan.methods
    ]
    result = run_methods(model, x, methods, target=targets, layer=plan.layer)
    total = x.shape[0]
    split: list[ExplainRows] = []
    start = 0
    for item in inputs:
        rows = slice(start, start + item.rows)
        outputs = {
            name: MethodOutput(
                output.map[rows] if output.map.shape[0] == total else output.map,
                _slice_extras(output.extras, rows, total),
            )
            for name, output in result.outputs.items()
        }
        share = item.rows / total
        split.append(
            ExplainRows(
                logits=result.logits[rows].float().cpu(),
                targets=result.targets[rows].cpu(),
                layer=result.layer,
                outputs=outputs,
                elapsed_ms={name: ms * share for name, ms in result.elapsed_ms.items()},
                batch_size=len(inputs),
            )
        )
        start += item.rows
    return split


def _slice_extras(extras: dict[str, Any], rows: slice, total: int) -> dict[str, Any]:
    sliced: dict[str, Any] = {}
    for key, value in extras.items():
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == total:
            sliced[key] = value[rows]
        elif isinstance(value, list) and len(value) == total:
            sliced[key] = value[rows]
        else:
            sliced[key] = value
    return sliced


def encode_array(array: np.ndarray) -> dict[str, Any]:
    """{dtype, shape, data}: base64 of the little-endian, C-order bytes."""
    little = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False)
    return {
        "dtype": little.dtype.name,
        "shape": list(little.shape),
        "data": base64.b64encode(little.tobytes()).decode("ascii"),
    }


def b64_png(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def png_bytes(image: Image.Image) -> bytes:
    """PNG at zlib level 1: 4-6x faster than Pillow's default (6) on photo overlays for about
    10% more bytes; encoding was the largest share of an explain request's CPU time."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def explanations_for(
    model: LoadedModel, picture: Image.Image, rows: ExplainRows, method_names: Sequence[str]
) -> tuple[list[Explanation], list[ClassScore]]:
    """The same Explanation objects `cnnlens.explain` builds, from one request's rows."""
    explanations = explanations_from_run(model, picture, rows, method_names)
    probabilities = torch.softmax(rows.logits.float(), dim=1)  # (k, K)
    return explanations, _top_k(model, probabilities[0], 5)


def render_explain_response(
    model: LoadedModel,
    picture: Image.Image,
    rows: ExplainRows,
    method_names: Sequence[str],
    outputs: Sequence[str],
    started: float,
) -> dict[str, Any]:
    """The JSON body of POST /v1/explain (CPU work: run it on a thread)."""
    explanations, predictions = explanations_for(model, picture, rows, method_names)
    items = []
    for explanation in explanations:
        items.append(
            {
                "method": explanation.method,
                "target": _score(explanation.target),
                "layer": explanation.layer,
                "width": picture.width if explanation.aligned else explanation.width,
                "height": picture.height if explanation.aligned else explanation.height,
                "heatmap_png": b64_png(png_bytes(explanation.heatmap()))
                if "heatmap" in outputs
                else None,
                "overlay_png": b64_png(png_bytes(explanation.overlay()))
                if "overlay" in outputs
                else None,
                "array": encode_array(explanation.map.astype(np.float32))
                if "array" in outputs
                else None,
                "elapsed_ms": round(explanation.elapsed_ms, 3),
            }
        )
    return {
        "model": model.name,
        "image": {"width": picture.width, "height": picture.height},
        "predictions": [_score(score) for score in predictions],
        "explanations": items,
        "elapsed_ms": round((time.monotonic() - started) * 1000, 3),
    }


def render_overlay_png(
    model: LoadedModel, picture: Image.Image, rows: ExplainRows, method_name: str
) -> bytes:
    """The first explanation's overlay PNG (Accept: image/png)."""
    explanations, _ = explanations_for(model, picture, rows, [method_name])
    return png_bytes(explanations[0].overlay())


def _score(score: ClassScore | None) -> dict[str, Any] | None:
    if score is None:
        return None
    probability = score.probability if np.isfinite(score.probability) else 0.0
    return {"index": score.index, "label": score.label, "probability": probability}
