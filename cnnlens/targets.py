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

from cnnlens.errors import InvalidParamsError, NoDetectionError, TargetError, did_you_mean, shown
from cnnlens.models import heads
from cnnlens.models.outputs import ModelOutput
from cnnlens.models.regions import Region, RegionError, region_weights

Class = int | str
# One class for every row, one per row (any iterable), a (B,) tensor, or None: the top-1.
Classes = Class | Sequence[Class] | Iterable[Class] | torch.Tensor | None
# A detection's box, x0, y0, x1, y1 in the input's pixels: one for every row, or one per row.
Boxes = torch.Tensor | Sequence[float] | Sequence[Sequence[float]]
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
    outputs {"boxes": (n, 4), "labels": (n,), "scores": (n,)} (torchvision's format), matched
    among every detection the model returns (whatever the `score_threshold` its predictions
    are shown at). `labels`: one class (index or label) for every row or one per row, None:
    the label of the detection that matches the box best. `boxes`: (4,) for every row or
    (B, 4), x0, y0, x1, y1 in the input's pixels; None: each row's highest-scoring detection
    (of the label, when given). Several objects of one image: one row each. A row whose
    score is 0 on the clean image is refused on `resolve` (`NoDetectionError`): its map
    would be blank; `require_match=False` lets it through (a randomized model's sanity check
    compares its maps whatever it detects).
    """

    labels: Classes = None
    boxes: Boxes | None = None
    iou_threshold: float = 0.5
    require_match: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.iou_threshold <= 1.0:
            raise InvalidParamsError(f"iou_threshold {self.iou_threshold} is not in [0, 1]")

    @property
    def indices(self) -> torch.Tensor:
        return _resolved(self.labels, "box target")

    @property
    def box_tensor(self) -> torch.Tensor:
        """(B, 4) each row's box, once resolved."""
        if self.boxes is None:
            raise RuntimeError("a box target is resolved (`resolve`) before it is scored")
        return torch.as_tensor(self.boxes, dtype=torch.float32)

    def resolve(
        self, output: ModelOutput, *, head: str, categories: Sequence[str], input_size: Size
    ) -> BoxTarget:
        detections = _detections(output)
        batch = len(detections)
        wanted = None
        if self.labels is not None:
            wanted = class_indices(self.labels, None, categories, batch).cpu()
        if self.boxes is None:
            labels, boxes = _top_detections(detections, wanted, categories)
        else:
            boxes = _checked_boxes(self.boxes, batch)
            labels = wanted if wanted is not None else self._best_labels(detections, boxes)
        resolved = replace(self, labels=labels, boxes=boxes)
        if not self.require_match:
            return resolved
        with torch.no_grad():
            scores = resolved.score(output)
        unmatched = torch.nonzero(scores <= 0).flatten().tolist()
        if unmatched:
            row = unmatched[0]
            found = detections[row]
            raise NoDetectionError(
                _unmatched(found, int(labels[row]), boxes[row], self, categories)
            )
        return resolved

    def score(self, output: ModelOutput, rows: torch.Tensor | None = None) -> torch.Tensor:
        detections = _detections(output)
        labels, boxes = self.indices, self.box_tensor
        if rows is None:
            rows = torch.arange(len(detections))
        scores = []
        for found, row in zip(detections, rows.tolist(), strict=True):
            scores.append(self._score_one(found, int(labels[row]), boxes[row]))
        return torch.stack(scores)

    def matched(self, output: ModelOutput) -> list[int | None]:
        """Each row's matched detection: its index in that row's detections (None: none, the
        score is 0)."""
        labels, boxes = self.indices, self.box_tensor
        found = zip(_detections(output), labels.tolist(), boxes, strict=True)
        return [self._match(row, int(label), box)[0] for row, label, box in found]

    def _match(
        self, found: Mapping[str, torch.Tensor], label: int, box: torch.Tensor
    ) -> tuple[int | None, torch.Tensor | None]:
        """The detection with this label overlapping the box most if IoU >= the threshold:
        its index among `found`'s and its IoU (differentiable), else (None, None)."""
        same = torch.nonzero(found["labels"] == label).flatten()  # (m,)
        if same.numel() == 0:
            return None, None
        ious = box_iou(box.to(found["boxes"])[None], found["boxes"][same])[0]  # (m,)
        best = int(ious.detach().argmax())
        if float(ious[best].detach()) < self.iou_threshold:
            return None, None
        return int(same[best]), ious[best]

    def _score_one(
        self, found: Mapping[str, torch.Tensor], label: int, box: torch.Tensor
    ) -> torch.Tensor:
        index, iou = self._match(found, label, box)
        if index is None or iou is None:
            return found["scores"].new_zeros(())
        return iou + found["scores"][index]

    def _best_labels(
        self, detections: Sequence[Mapping[str, torch.Tensor]], boxes: torch.Tensor
    ) -> torch.Tensor:
        """(B,) the label of the detection overlapping each row's box most (IoU >= the
        threshold); a row without one keeps -1 (refused by `resolve`)."""
        labels = []
        for found, box in zip(detections, boxes, strict=True):
            if found["boxes"].shape[0] == 0:
                labels.append(-1)
                continue
            ious = box_iou(box[None].to(found["boxes"]), found["boxes"].detach())[0]
            best = int(ious.argmax())
            ok = float(ious[best]) >= self.iou_threshold
            labels.append(int(found["labels"][best]) if ok else -1)
        return torch.tensor(labels, dtype=torch.long)

    def loss(self, output: ModelOutput, rows: torch.Tensor | None = None) -> torch.Tensor:
        return -self.score(output, rows)

    def take(self, rows: Rows) -> BoxTarget:
        boxes = None if self.boxes is None else torch.as_tensor(self.boxes, dtype=torch.float32)
        return replace(
            self,
            labels=_take_classes(self.labels, rows),
            boxes=boxes if boxes is None or boxes.dim() == 1 else boxes[rows],
        )

    def join(self, others: Sequence[Target]) -> BoxTarget:
        parts = [p for p in (self, *others) if isinstance(p, BoxTarget)]
        boxes = torch.cat([p.box_tensor for p in parts])
        return replace(self, labels=_joined_indices(self, others), boxes=boxes)


def _checked_boxes(given: Boxes, batch: int) -> torch.Tensor:
    """(B, 4) float boxes from (4,) or (B, 4) ones, each with x0 < x1 and y0 < y1."""
    boxes = torch.as_tensor(given, dtype=torch.float32).cpu()
    boxes = boxes.expand(batch, 4) if boxes.dim() == 1 and boxes.shape[0] == 4 else boxes
    if tuple(boxes.shape) != (batch, 4):
        raise RegionError(f"box target: need (4,) or ({batch}, 4) boxes, got {tuple(boxes.shape)}")
    if not bool(torch.isfinite(boxes).all()):
        raise RegionError("box target: every box is four finite numbers x0, y0, x1, y1")
    if not bool((boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()):
        raise RegionError("box target: every box needs x0 < x1 and y0 < y1")
    return boxes.clone()


def _top_detections(
    detections: Sequence[Mapping[str, torch.Tensor]],
    wanted: torch.Tensor | None,
    categories: Sequence[str],
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,) labels and (B, 4) boxes of each row's highest-scoring detection (of the wanted
    label when given)."""
    labels, boxes = [], []
    for row, found in enumerate(detections):
        keep = torch.ones_like(found["scores"], dtype=torch.bool)
        if wanted is not None:
            keep = found["labels"] == int(wanted[row])
        if not bool(keep.any()):
            what = "" if wanted is None else f" labelled {_label(int(wanted[row]), categories)!r}"
            raise NoDetectionError(f"the model detects nothing{what} in image {row} to explain")
        best = int(torch.nonzero(keep).flatten()[found["scores"][keep].argmax()])
        labels.append(int(found["labels"][best]))
        boxes.append(found["boxes"][best].detach().float().cpu())
    return torch.tensor(labels, dtype=torch.long), torch.stack(boxes)


def _unmatched(
    found: Mapping[str, torch.Tensor],
    label: int,
    box: torch.Tensor,
    target: BoxTarget,
    categories: Sequence[str],
) -> str:
    """Why a box scores 0: no detection of its label overlaps it enough (and the nearest)."""
    corners = ", ".join(f"{float(v):.1f}" for v in box)
    what = "no detection" if label < 0 else f"no detection labelled {_label(label, categories)!r}"
    message = (
        f"{what} overlaps the box ({corners} in the model input's pixels) with IoU >= "
        f"{target.iou_threshold:g}: "
        "its score is 0, so there is nothing to explain"
    )
    if found["boxes"].shape[0]:
        ious = box_iou(box[None].to(found["boxes"]), found["boxes"].detach())[0]
        best = int(ious.argmax())
        nearest = _label(int(found["labels"][best]), categories)
        message += f" (the nearest detection: {nearest!r} at IoU {float(ious[best]):.2f})"
    return message


def _label(index: int, categories: Sequence[str]) -> str:
    return categories[index] if 0 <= index < len(categories) else str(index)


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


def as_target(
    target: Target | Classes,
    head: str,
    batch: int,
    region: Region = None,
    box: Boxes | None = None,
) -> Target:
    """A call's `target` (and `region` or `box`) -> a Target: a Target as it is, else a class
    target for the model's head (a `RegionTarget` on a segmenter, a `BoxTarget` on a
    detector)."""
    if isinstance(target, ClassTarget | RegionTarget | BoxTarget):
        if region is not None or box is not None:
            raise RegionError(
                "give the region inside the RegionTarget (a box inside the BoxTarget), "
                "not beside it"
            )
        return target
    classes = per_row(target, batch)  # type: ignore[arg-type]
    if head == heads.DETECTION:
        if region is not None:
            raise RegionError("a detector's target is chosen by its box, not a region")
        return BoxTarget(classes, box)
    if box is not None:
        raise RegionError("a box chooses a detection: it applies to detectors only")
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
