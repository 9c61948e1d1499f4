"""Output heads: how a model's logits become predictions (softmax, sigmoid, binary,
segmentation); a detector's head is "detection" (its outputs: `cnnlens.models.detection`)."""

from __future__ import annotations

from typing import Literal

import torch

from cnnlens.errors import CnnlensError

HeadName = Literal["softmax", "sigmoid", "binary", "segmentation", "detection"]
HEADS: tuple[str, ...] = ("softmax", "sigmoid", "binary", "segmentation", "detection")
SEGMENTATION = "segmentation"  # (B, K, H, W) logits: a class per pixel
DETECTION = "detection"  # per image {"boxes", "labels", "scores"}: torchvision's detectors
# The heads whose output is one tensor (every head but a detector's list of dicts).
TENSOR_HEADS = frozenset(head for head in HEADS if head != DETECTION)
BINARY_LABELS = ("negative", "positive")


class HeadError(CnnlensError):
    """An unknown head, or one that does not fit the model's outputs."""

    code = "invalid_head"
    status = 422


def check_head(head: str) -> HeadName:
    """The head's canonical name; unknown names are errors."""
    lowered = head.strip().lower()
    if lowered not in HEADS:
        raise HeadError(f"unknown head {head!r}: use one of {', '.join(HEADS)}")
    return lowered  # type: ignore[return-value]


def class_logits(head: str, logits: torch.Tensor) -> torch.Tensor:
    """(B, K) logits, one column per class; a binary head's one logit z becomes (-z, z);
    a segmentation head's (B, K, H, W) logits keep their pixels.

    Class targets (`cnnlens.targets.ClassTarget`) explain a column of this tensor: the logit
    itself for softmax and sigmoid heads, and +/-z (the log-odds of that class) for a binary
    head.
    """
    if head == "binary":
        if logits.shape[1] != 1:
            raise HeadError(f"a binary head needs one output, the model gives {logits.shape[1]}")
        return torch.cat([-logits, logits], dim=1)
    return logits


def pixel_shares(logits: torch.Tensor) -> torch.Tensor:
    """(B, K, H, W) segmentation logits -> (B, K) fraction of pixels predicted as each class."""
    counts = torch.zeros(logits.shape[:2], dtype=torch.float32, device=logits.device)
    predicted = logits.argmax(dim=1).flatten(1)  # (B, H*W)
    counts.scatter_add_(1, predicted, torch.ones_like(predicted, dtype=torch.float32))
    return counts / predicted.shape[1]


def ranking(head: str, logits: torch.Tensor) -> torch.Tensor:
    """(B, K) what the top-1 class is chosen by: the class scores, or pixel shares."""
    if head == SEGMENTATION:
        return pixel_shares(logits)
    return class_logits(head, logits)


def probabilities(head: str, logits: torch.Tensor) -> torch.Tensor:
    """(B, K) class probabilities: softmax over classes, or each class's own sigmoid;
    segmentation: each class's softmax probability averaged over the pixels."""
    scores = class_logits(head, logits.float())
    if head == SEGMENTATION:
        return torch.softmax(scores, dim=1).mean(dim=(2, 3))
    if head == "softmax":
        return torch.softmax(scores, dim=1)
    return torch.sigmoid(scores)  # binary: sigmoid(-z) = 1 - sigmoid(z)


def target_loss(head: str, logits: torch.Tensor) -> torch.Tensor:
    """(B, K) per-class loss L_c: -log softmax (single-label) or -log sigmoid(z_c)."""
    scores = class_logits(head, logits.float())
    if head == "softmax":
        return -torch.log_softmax(scores, dim=1)
    return -torch.nn.functional.logsigmoid(scores)


def predicted_sets(head: str, logits: torch.Tensor, threshold: float = 0.5) -> list[set[int]]:
    """Per sample, the classes predicted: top-1 (softmax, binary), all above threshold
    (sigmoid) or every class some pixel is predicted as (segmentation)."""
    if head == SEGMENTATION:
        return [set(torch.nonzero(row > 0).flatten().tolist()) for row in pixel_shares(logits)]
    probs = probabilities(head, logits)
    if head == "sigmoid":
        return [set(torch.nonzero(row >= threshold).flatten().tolist()) for row in probs]
    return [{int(index)} for index in probs.argmax(dim=1)]
