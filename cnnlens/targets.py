"""What to explain, as values: a class, a class over a region, a detection box, a channel.

A target computes the score to explain from the model's output, as pytorch-grad-cam's
`model_targets` and TorchCAM's `OutputTarget` do, for a whole batch at once: row b of the
batch explains the target's row b. It is built once from the call or the request
(`as_target`), resolved once against the clean forward's output (`resolve`: the top-1
class, the predicted pixels of a segmentation class, label names to indices), and then
handed to every method, which asks it for scores and losses.

    run_methods(model, x, ["saliency"], target=RegionTarget("sky", region=(0, 0, 64, 32)))
    run_methods(model, x, ["saliency"], target="tabby")  # ClassTarget("tabby")

Scores for some input (captum's `forward_func`, a perturbation's batch): see
`MethodContext.scores`. A batch that repeats rows (captum's `n_steps`, a method's perturbed
copies) passes `rows`: which target row each output row belongs to.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torchvision.ops import box_iou

from cnnlens.errors import InvalidParamsError, TargetError, did_you_mean, shown
from cnnlens.models import heads
from cnnlens.models.regions import Region, RegionError, region_weights

Class = int | str
# One class for every row, one per row (any iterable), a (B,) tensor, or None: the top-1.
Classes = Class | Sequence[Class] | Iterable[Class] | torch.Tensor | None
# What a model returns: (B, K) class logits, (B, K, h, w) class maps, or a detector's
# per-image dicts {"boxes": (n, 4), "labels": (n,), "scores": (n,)} (torchvision's format).
ModelOutput = torch.Tensor | Sequence[Mapping[str, torch.Tensor]]
Rows = slice | torch.Tensor  # rows of a batch: a slice, or one target row per output row
Size = tuple[int, int]  # (H, W) of the model's input


@runtime_checkable
class Target(Protocol):
    """What one batch explains, row by row; it computes its scores from the model's output."""

    @property
    def indices(self) -> torch.Tensor:
        """(B,) each row's class index, once resolved (responses name it)."""

    def resolve(
        self, output: ModelOutput, *, head: str, categories: Sequence[str], input_size: Size
    ) -> Target:
        """The same target with every default filled from the clean forward's `output`
        (top-1 class, predicted pixels) and labels turned into indices; 422 if it does not
        fit the model (unknown label, wrong count, a region outside the input)."""

    def score(self, output: ModelOutput, rows: torch.Tensor | None = None) -> torch.Tensor:
        """(N,) the score to explain of each row of `output`, differentiable. `rows` (N,):
        which target row each output row belongs to (default: output row b is row b)."""

    def loss(self, output: ModelOutput, rows: torch.Tensor | None = None) -> torch.Tensor:
        """(N,) the loss occlusion measures: -log P(class) for class heads, -score else."""

    def take(self, rows: Rows) -> Target:
        """The target of some rows of the batch (before or after `resolve`)."""

    def join(self, others: Sequence[Target]) -> Target:
        """Resolved targets of consecutive rows: this one's, then the others'."""


def class_index(target: Class, categories: Sequence[str], num_classes: int) -> int:
    """One class given as an index (an int, or text of the ASCII digits 0-9 only) or a label.

    Labels are compared after NFKC normalization and case folding ("Egyptian cat",
    "EGYPTIAN CAT" and full-width letters name one class). Text that reads as a number in any
    other way (a sign, "２８５", "²") is refused, never read as an index: every front parses
    indices alike. Anything else is a TargetError that names it.
    """
    if isinstance(target, bool):
        raise TargetError(f"target must be a class index or label, not {target!r}")
    if isinstance(target, str):
        text = target.strip()
        if _ASCII_INDEX.fullmatch(text):
            target = int(text)
        else:
            folded = fold_label(text)
            if _NUMBER_LIKE.fullmatch(text) or _NUMBER_LIKE.fullmatch(folded):
                raise TargetError(
                    f"{shown(text)} is not a class index: write an index with the ASCII "
                    "digits 0-9 only (no sign, spaces or other digits)"
                )
            index = _folded_labels(tuple(categories)).get(folded)
            if index is None:
                hint = did_you_mean(text, categories)
                raise TargetError(f"unknown class label {shown(text)}{hint}")
            return index
    if not isinstance(target, int):
        raise TargetError(f"target must be a class index or label, not {shown(target)}")
    if not 0 <= target < num_classes:
        raise TargetError(f"class index {target} is out of range 0..{num_classes - 1}")
    return target


_ASCII_INDEX = re.compile(r"[0-9]+")
_NUMBER_LIKE = re.compile(r"\s*[+-]?\s*\d+\s*")  # \d: the digits of any script


def fold_label(text: str) -> str:
    """A label as labels are compared: NFKC-normalized and case-folded."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())


@functools.lru_cache(maxsize=32)
def _folded_labels(categories: tuple[str, ...]) -> dict[str, int]:
    """Each folded label -> its first class (the first of two equal names wins)."""
    folded: dict[str, int] = {}
    for index, label in enumerate(categories):
        folded.setdefault(fold_label(label), index)
    return folded


def per_row(classes: Classes, batch: int) -> Classes:
    """`classes` with any iterable of per-row classes made a list, checked against `batch`."""
    if classes is None or isinstance(classes, int | str):
        return classes
    if isinstance(classes, torch.Tensor) and classes.dim() == 0:
        return int(classes)
    values = classes if isinstance(classes, torch.Tensor | Sequence) else list(classes)
    if len(values) != batch:
        raise TargetError(f"got {len(values)} targets for a batch of {batch}")
    return values


def class_indices(
    classes: Classes, ranking: torch.Tensor | None, categories: Sequence[str], batch: int
) -> torch.Tensor:
    """(B,) long class indices on the ranking's device; None: each row's top of `ranking`
    (B, K), the class scores or pixel shares the top-1 is chosen by."""
    if classes is None:
        if ranking is None:
            raise TargetError("a target is needed when no forward pass is available")
        return ranking.argmax(dim=1)
    classes = per_row(classes, batch)
    if isinstance(classes, torch.Tensor):
        values: list[Class] = [int(v) for v in classes.flatten().tolist()]
    elif isinstance(classes, int | str):
        values = [classes] * batch
    else:
        values = list(classes)  # type: ignore[arg-type]
    num_classes = ranking.shape[1] if ranking is not None else len(categories) or 1000
    indices = [class_index(value, categories, num_classes) for value in values]
    device = None if ranking is None else ranking.device
    return torch.tensor(indices, dtype=torch.long, device=device)


def _take_classes(classes: Classes, rows: Rows) -> Classes:
    if classes is None or isinstance(classes, int | str):
        return classes
    if isinstance(classes, torch.Tensor):
        return classes if classes.dim() == 0 else classes[rows]
    values = list(classes)
    if isinstance(rows, slice):
        return values[rows]
    return [values[int(i)] for i in rows.tolist()]


def _pick(values: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
    return values if rows is None else values[rows.to(values.device)]


def _resolved(values: Classes, kind: str) -> torch.Tensor:
    if not isinstance(values, torch.Tensor):
        raise RuntimeError(f"a {kind} is resolved (`resolve`) before it is scored")
    return values


@dataclass(frozen=True)
class ClassTarget:
    """A class of a classifier: S_c = its logit (softmax and sigmoid heads) or +/-z, the
    log-odds of that class, for a binary head's one logit z (`heads.class_logits`).

    pytorch-grad-cam's `ClassifierOutputTarget` / `BinaryClassifierOutputTarget`.
    `classes`: one index or label for every row, one per row, or None for each row's top-1.
    `head`: None takes the model's (see `cnnlens.models.heads`).
    """

    classes: Classes = None
    head: str | None = None

    def resolve(
        self, output: ModelOutput, *, head: str, categories: Sequence[str], input_size: Size
    ) -> ClassTarget:
        logits = _tensor(output, "a class target")
        head = self.head or head
        ranking = heads.ranking(head, logits)  # binary: (negative, positive)
        indices = class_indices(self.classes, ranking, categories, logits.shape[0])
        return ClassTarget(indices, head)

    @property
    def indices(self) -> torch.Tensor:
        return _resolved(self.classes, "class target")

    def score(self, output: ModelOutput, rows: torch.Tensor | None = None) -> torch.Tensor:
        logits = heads.class_logits(self._head, _tensor(output, "a class target"))
        return logits.gather(1, self._column(rows)).squeeze(1)

    def loss(self, output: ModelOutput, rows: torch.Tensor | None = None) -> torch.Tensor:
        losses = heads.target_loss(self._head, _tensor(output, "a class target"))
        return losses.gather(1, self._column(rows).to(losses.device)).squeeze(1)

    def take(self, rows: Rows) -> ClassTarget:
        return replace(self, classes=_take_classes(self.classes, rows))

    def join(self, others: Sequence[Target]) -> ClassTarget:
        return replace(self, classes=_joined_indices(self, others))

    @property
    def _head(self) -> str:
        return self.head or "softmax"

    def _column(self, rows: torch.Tensor | None) -> torch.Tensor:
        return _pick(_resolved(self.classes, "class target"), rows).view(-1, 1)


@dataclass(frozen=True)
class RegionTarget:
    """A class of a segmenter over a region: S = sum_ij w_ij y^c_ij over its (B, K, h, w)
    logits, w the region's share of each output pixel (pytorch-grad-cam's
    `SemanticSegmentationTarget`).

    `classes`: as `ClassTarget`'s; None: the class most pixels are predicted as.
    `region`: in the input's pixels, a box (x0, y0, x1, y1) or a mask (H, W) or (B, H, W);
    None: the pixels predicted as the class. `weights` (B, h, w) fills in on `resolve`.
    """

    classes: Classes = None
    region: Region = None
    weights: torch.Tensor | None = None

    def resolve(
        self, output: ModelOutput, *, head: str, categories: Sequence[str], input_size: Size
    ) -> RegionTarget:
        logits = _tensor(output, "a region target")
        if logits.dim() != 4:
            raise heads.HeadError(
                f"a region target needs (B, K, H, W) outputs, got {logits.dim()}-D"
            )
        ranking = heads.pixel_shares(logits)
        indices = class_indices(self.classes, ranking, categories, logits.shape[0])
        weights = region_weights(self.region, logits, indices, input_size)
        return RegionTarget(indices, self.region, weights)

    def score(self, output: ModelOutput, rows: torch.Tensor | None = None) -> torch.Tensor:
        logits = _tensor(output, "a region target")
        if logits.dim() != 4:
            raise heads.HeadError(
                f"a segmentation head needs (B, K, H, W) outputs, got {logits.dim()}-D"
            )
        if self.weights is None:
            raise RuntimeError("a region target is resolved (`resolve`) before it is scored")
        classes = _pick(_resolved(self.classes, "region target"), rows)
        index = classes.view(-1, 1, 1, 1).expand(-1, 1, *logits.shape[-2:])
        maps = logits.gather(1, index).squeeze(1)  # (N, h, w)
        return (maps * _pick(self.weights, rows).to(maps.dtype)).sum(dim=(1, 2))

    def loss(self, output: ModelOutput, rows: torch.Tensor | None = None) -> torch.Tensor:
        return -self.score(output, rows)

    @property
    def indices(self) -> torch.Tensor:
        return _resolved(self.classes, "region target")

    def take(self, rows: Rows) -> RegionTarget:
        region = self.region
        if isinstance(region, torch.Tensor | np.ndarray) and region.ndim == 3:
            region = region[rows]  # one mask per row
        weights = None if self.weights is None else self.weights[rows]
        return RegionTarget(_take_classes(self.classes, rows), region, weights)

    def join(self, others: Sequence[Target]) -> RegionTarget:
        weights = [p.weights for p in (self, *others) if isinstance(p, RegionTarget)]
        joined = torch.cat([w for w in weights if w is not None])
        return RegionTarget(_joined_indices(self, others), self.region, joined)


@dataclass(frozen=True)
class BoxTarget:
    """A detected object: S = IoU(box, d) + score(d) for the detection d with the same label
    that overlaps the box most, if IoU >= `iou_threshold`; 0 when none does.

    pytorch-grad-cam's `FasterRCNNBoxScoreTarget`, row by row, on a detector's per-image
    outputs {"boxes": (n, 4), "labels": (n,), "scores": (n,)} (torchvision's format).
    `labels`: one class (index or label) for every row or one per row; `boxes`: (4,) for
    every row or (B, 4), x0, y0, x1, y1 in the input's pixels. Several objects of one image:
    one row each.
    """

    labels: Classes
    boxes: torch.Tensor | Sequence[float] | Sequence[Sequence[float]]
    iou_threshold: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.iou_threshold <= 1.0:
            raise InvalidParamsError(f"iou_threshold {self.iou_threshold} is not in [0, 1]")

    @property
    def indices(self) -> torch.Tensor:
        return _resolved(self.labels, "box target")

    def resolve(
        self, output: ModelOutput, *, head: str, categories: Sequence[str], input_size: Size
    ) -> BoxTarget:
        detections = _detections(output)
        batch = len(detections)
        labels = class_indices(self.labels, None, categories, batch)
        boxes = torch.as_tensor(self.boxes, dtype=torch.float32)
        boxes = boxes.expand(batch, 4) if boxes.dim() == 1 else boxes
        if tuple(boxes.shape) != (batch, 4):
            raise RegionError(
                f"box target: need (4,) or ({batch}, 4) boxes, got {tuple(boxes.shape)}"
            )
        if not bool((boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()):
            raise RegionError("box target: every box needs x0 < x1 and y0 < y1")
        return BoxTarget(labels, boxes, self.iou_threshold)

    def score(self, output: ModelOutput, rows: torch.Tensor | None = None) -> torch.Tensor:
        detections = _detections(output)
        labels, boxes = self.indices, torch.as_tensor(self.boxes)
        if rows is None:
            rows = torch.arange(len(detections))
        scores = []
        for found, row in zip(detections, rows.tolist(), strict=True):
            scores.append(self._score_one(found, int(labels[row]), boxes[row]))
        return torch.stack(scores)

    def _score_one(
        self, found: Mapping[str, torch.Tensor], label: int, box: torch.Tensor
    ) -> torch.Tensor:
        same = found["labels"] == label  # (n,)
        zero = found["scores"].new_zeros(())
        if not bool(same.any()):
            return zero
        ious = box_iou(box.to(found["boxes"])[None], found["boxes"][same])[0]  # (m,)
        best = int(ious.argmax())
        if float(ious[best]) < self.iou_threshold:
            return zero
        matched: torch.Tensor = ious[best] + found["scores"][same][best]
        return matched

    def loss(self, output: ModelOutput, rows: torch.Tensor | None = None) -> torch.Tensor:
        return -self.score(output, rows)

    def take(self, rows: Rows) -> BoxTarget:
        boxes = torch.as_tensor(self.boxes, dtype=torch.float32)
        return BoxTarget(
            _take_classes(self.labels, rows),
            boxes if boxes.dim() == 1 else boxes[rows],
            self.iou_threshold,
        )

    def join(self, others: Sequence[Target]) -> BoxTarget:
        parts = [p for p in (self, *others) if isinstance(p, BoxTarget)]
        boxes = torch.cat([torch.as_tensor(p.boxes) for p in parts])
        return BoxTarget(_joined_indices(self, others), boxes, self.iou_threshold)


@dataclass(frozen=True)
class ChannelTarget:
    """A channel of a layer: S = the mean of its activation over positions (feature
    visualization, Olah et al. 2017). Its output is the layer's (B, C, h, w) or (B, C)."""

    layer: str
    channel: int

    def score(self, activations: torch.Tensor) -> torch.Tensor:
        """(B,) the channel's mean activation."""
        if activations.dim() < 2 or self.channel >= activations.shape[1]:
            raise InvalidParamsError(
                f"channel {self.channel} is out of range for layer {self.layer!r} "
                f"with output {tuple(activations.shape[1:])}"
            )
        return activations[:, self.channel].flatten(1).mean(dim=1)


def as_target(target: Target | Classes, head: str, batch: int, region: Region = None) -> Target:
    """A call's `target` (and `region`) -> a Target: a Target as it is, else a class target
    for the model's head (a `RegionTarget` on a segmenter)."""
    if isinstance(target, ClassTarget | RegionTarget | BoxTarget):
        if region is not None:
            raise RegionError("give the region inside the RegionTarget, not beside it")
        return target
    classes = per_row(target, batch)  # type: ignore[arg-type]
    if head == heads.SEGMENTATION:
        return RegionTarget(classes, region)
    if region is not None:
        raise RegionError("a region applies to segmentation models only")
    return ClassTarget(classes, head)


def _tensor(output: ModelOutput, what: str) -> torch.Tensor:
    if not isinstance(output, torch.Tensor):
        raise TargetError(f"{what} needs a model that returns a tensor")
    return output


def _detections(output: ModelOutput) -> Sequence[Mapping[str, torch.Tensor]]:
    if isinstance(output, torch.Tensor):
        raise TargetError(
            "a box target needs a detector's outputs (per image: boxes, labels, scores)"
        )
    return output


def _joined_indices(first: Target, others: Sequence[Target]) -> torch.Tensor:
    return torch.cat([first.indices, *(other.indices for other in others)])
