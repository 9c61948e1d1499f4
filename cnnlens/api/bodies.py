"""The one builder of v1 bodies from the library's results (service and local CLI alike).

It reads `cnnlens.explain.Explanation`s without importing them (no torch here)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np

from cnnlens.api.codecs import b64, encode_array, image_bytes
from cnnlens.api.models import ClassScore, ExplainResponse, ExplanationBody, ImageSize

if TYPE_CHECKING:
    from cnnlens.explain import Explanation


class Score(Protocol):
    """A class with its probability (`cnnlens.explain.ClassScore`, read only)."""

    @property
    def index(self) -> int: ...
    @property
    def label(self) -> str: ...
    @property
    def probability(self) -> float: ...


def class_score(score: Score | None) -> ClassScore | None:
    """A class and its probability; a non-finite probability is sent as 0."""
    if score is None:
        return None
    probability = float(score.probability)
    share = getattr(score, "pixel_share", None)
    return ClassScore(
        index=int(score.index),
        label=str(score.label),
        probability=probability if math.isfinite(probability) else 0.0,
        pixel_share=None if share is None else float(share),
    )


def score_of(index: int, label: str, probability: float) -> ClassScore:
    """A ClassScore from its three values (non-finite probability: 0)."""
    value = float(probability)
    return ClassScore(index=index, label=label, probability=value if math.isfinite(value) else 0.0)


def image_files(
    explanation: Explanation, outputs: Sequence[str], image_format: str = "png"
) -> tuple[bytes | None, bytes | None]:
    """The overlay and heatmap files `outputs` asks for, as sent and as the CLI writes them:
    the overlay as `image_format`, the heatmap as a palette PNG (RGB where pixels are not
    explained)."""
    overlay = (
        image_bytes(explanation.overlay_pixels(), image_format) if "overlay" in outputs else None
    )
    heatmap = explanation.heatmap_png() if "heatmap" in outputs else None
    return overlay, heatmap


def explanation_body(
    explanation: Explanation, size: ImageSize, outputs: Sequence[str], image_format: str = "png"
) -> ExplanationBody:
    """One map as sent, as `outputs` asks, at the image's size: the overlay as
    `image_format`, the heatmap as a palette PNG, the raw array (`image_files`)."""
    overlay, heatmap = image_files(explanation, outputs, image_format)
    return ExplanationBody(
        method=explanation.method,
        target=class_score(explanation.target),
        layer=explanation.layer,
        width=size.width if explanation.aligned else explanation.width,
        height=size.height if explanation.aligned else explanation.height,
        heatmap_png=None if heatmap is None else b64(heatmap),
        overlay_png=None if overlay is None else b64(overlay),
        array=encode_array(explanation.map.astype(np.float32)) if "array" in outputs else None,
        elapsed_ms=round(explanation.elapsed_ms, 3),
        explained_box=list(box) if (box := explanation.explained_box) is not None else None,
    )


def explain_response(
    model: str,
    size: ImageSize,
    predictions: Iterable[Score],
    explanations: Iterable[Explanation],
    outputs: Sequence[str],
    elapsed_ms: float,
    was_training: bool = False,
    image_format: str = "png",
) -> ExplainResponse:
    """The body of POST /v1/explain (overlays encoded as `image_format`)."""
    return ExplainResponse(
        model=model,
        image=size,
        predictions=[s for score in predictions if (s := class_score(score)) is not None],
        explanations=[explanation_body(item, size, outputs, image_format) for item in explanations],
        elapsed_ms=round(elapsed_ms, 3),
        was_training=was_training,
        overlay_format=image_format,
    )
