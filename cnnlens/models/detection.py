"""Object detectors: torchvision's by name, any module that returns their outputs, and their
detections above a score threshold.

A detector's forward in eval mode returns, per image, {"boxes": (n, 4) x0 y0 x1 y1 in the
input's pixels, "labels": (n,), "scores": (n,)} (torchvision's format). Its own transform
(`GeneralizedRCNNTransform`) normalizes and resizes the image, so cnnlens hands it pixels in
[0, 1] (mean 0, std 1) at the transform's own size: `min_size` a side (`fixed_size` for SSD),
which the transform then keeps. What to explain is a detection, a `BoxTarget`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from cnnlens.errors import InvalidParamsError, NoDetectionError
from cnnlens.models.heads import DETECTION, HeadError
from cnnlens.models.hooks import hook_session
from cnnlens.models.loaded import LoadedModel
from cnnlens.models.outputs import is_detections
from cnnlens.models.preprocess import Preprocessing
from cnnlens.models.regions import Box

if TYPE_CHECKING:
    from cnnlens.targets import BoxTarget


@dataclass(frozen=True)
class Detection:
    """One detected object: its class, the detector's score and its box."""

    index: int
    score: float
    box: Box  # x0, y0, x1, y1 in the input's pixels (or the image's, once mapped)


def is_torchvision_detector(arch: str) -> bool:
    import torchvision

    return arch in torchvision.models.list_models(torchvision.models.detection)


def build_torchvision_detector(
    arch: str, hub_weights: str | None, arch_kwargs: dict[str, Any]
) -> nn.Module:
    """torchvision's detector `arch`: its default weights, or random ones without any
    download (no backbone weights either)."""
    import torchvision

    kwargs = dict(arch_kwargs)
    if hub_weights is None:
        kwargs["weights_backbone"] = None
    module: nn.Module = torchvision.models.get_model(arch, weights=hub_weights, **kwargs)
    return module


def detector_preprocessing(module: nn.Module, base: Preprocessing | None = None) -> Preprocessing:
    """Pixels in [0, 1] at the size of the detector's own transform (torchvision's
    `GeneralizedRCNNTransform`): its normalization and resizing are the detector's, and at
    its `min_size` (`fixed_size` for SSD) it leaves the size as it is. A module without such
    a transform keeps `base` (default: `Preprocessing()`)."""
    transform = getattr(module, "transform", None)
    fixed = getattr(transform, "fixed_size", None)
    min_size = getattr(transform, "min_size", None)
    if fixed:
        size = (int(fixed[1]), int(fixed[0]))  # torchvision's fixed_size is (width, height)
    elif isinstance(min_size, Sequence) and min_size:
        size = (int(min_size[-1]), int(min_size[-1]))
    else:
        return base or Preprocessing()
    return Preprocessing(input_size=size, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def detector_classes(module: nn.Module) -> int | None:
    """The classes a torchvision-style detector scores (background included), if found."""
    for child in module.modules():
        for name in ("num_classes", "num_columns"):  # RetinaNet and FCOS heads; SSD's
            classes = getattr(child, name, None)
            if isinstance(classes, int):
                return classes
        score = getattr(child, "cls_score", None)  # Faster R-CNN's box predictor
        if isinstance(score, nn.Linear):
            return score.out_features
    return None


def detection_head(loaded: LoadedModel, asked: str | None) -> str:
    """ "detection" for a detector (a torchvision one, or a module whose probe forward returns
    detections); a head asked for that does not fit is an error."""
    from cnnlens.models.segmentation import probe

    if loaded.head == DETECTION:
        if asked not in (None, DETECTION):
            raise HeadError(f"a detector's head is detection, not {asked}")
        return DETECTION
    if not is_detections(probe(loaded.module, loaded.preprocessing)):
        raise not_a_detector()
    return DETECTION


def not_a_detector() -> HeadError:
    return HeadError(
        "a detection head needs a model that returns detections per image (a list of "
        '{"boxes", "labels", "scores"})'
    )


def set_score_threshold(loaded: LoadedModel, value: float | None) -> None:
    """A detector's `score_threshold` (None keeps 0.5); refused for other heads."""
    if value is None:
        return
    if loaded.head != DETECTION:
        raise InvalidParamsError("score_threshold applies to detectors (head detection) only")
    if not 0.0 <= float(value) <= 1.0:
        raise InvalidParamsError(f"score_threshold {value} is not in [0, 1]")
    loaded.score_threshold = float(value)


def detections_above(found: Mapping[str, torch.Tensor], threshold: float) -> list[Detection]:
    """One image's detections scoring at least `threshold`, highest score first."""
    scores = found["scores"].detach().float().cpu()
    boxes = found["boxes"].detach().float().cpu()
    labels = found["labels"].detach().cpu()
    order = torch.argsort(scores, descending=True).tolist()
    return [
        Detection(
            int(labels[i]),
            float(scores[i]),
            (float(boxes[i, 0]), float(boxes[i, 1]), float(boxes[i, 2]), float(boxes[i, 3])),
        )
        for i in order
        if float(scores[i]) >= threshold
    ]


def detect(model: LoadedModel, x: torch.Tensor) -> list[list[Detection]]:
    """Each image's detections above the model's `score_threshold`, highest score first,
    boxes in input pixels (one forward, eval mode, no gradients)."""
    with hook_session(model.module), torch.no_grad():
        output = model.module(x.to(model.device))
    if not is_detections(output):
        raise not_a_detector()
    return [detections_above(row, model.score_threshold) for row in output]


def rows_to_explain(
    model: LoadedModel,
    found: Sequence[Detection] | None,
    labels: Sequence[int] = (),
    box: Box | None = None,
    limit: int | None = None,
) -> tuple[list[int] | None, list[Box]]:
    """What one image's explanations are about, one row each, as (labels, boxes in input
    pixels): the given `box` for each of `labels`, or for the label of the detection it
    matches (labels None); without a box, every detection `found` above the score threshold
    (of `labels` when given), highest score first, at most `limit`. `NoDetectionError` (422)
    when there is none."""
    if box is not None:
        return (list(labels) or None), [box] * max(1, len(labels))
    chosen = [d for d in found or () if not labels or d.index in labels][:limit]
    if not chosen:
        which = "" if not labels else " of " + ", ".join(model.label_of(i) for i in labels)
        raise NoDetectionError(
            f"the model detects nothing{which} above its score_threshold "
            f"{model.score_threshold:g} in this image; give a box (and its label) to explain"
        )
    return [d.index for d in chosen], [d.box for d in chosen]


def boxes_to_explain(
    model: LoadedModel, x: torch.Tensor, labels: Sequence[int] = (), box: Box | None = None
) -> BoxTarget:
    """`rows_to_explain` of the image x (1, 3, H, W), as a BoxTarget (one forward when no
    box is given)."""
    from cnnlens.targets import BoxTarget

    found = None if box is not None else detect(model, x[:1])[0]
    chosen, boxes = rows_to_explain(model, found, labels, box)
    return BoxTarget(chosen, [list(b) for b in boxes])
