"""Output heads: how a model's logits become predictions (softmax, sigmoid, binary)."""

from __future__ import annotations

from typing import Literal

import torch

from cnnlens.errors import CnnlensError

HeadName = Literal["softmax", "sigmoid", "binary"]
HEADS: tuple[str, ...] = ("softmax", "sigmoid", "binary")
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
    """(B, K) logits, one column per class; a binary head's one logit z becomes (-z, z).

    Gradient methods explain the target's column of this tensor: the logit itself for
    softmax and sigmoid heads, and +/-z (the log-odds of that class) for a binary head.
    """
    if head == "binary":
        if logits.shape[1] != 1:
            raise HeadError(f"a binary head needs one output, the model gives {logits.shape[1]}")
        return torch.cat([-logits, logits], dim=1)
    return logits


def target_scores(head: str, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B,) the score gradient methods explain: the target's column of `class_logits`.

    Softmax and sigmoid heads: the target's logit. Binary head (one logit z): z for
    "positive" (index 1) and -z for "negative" (index 0).
    """
    return class_logits(head, logits).gather(1, targets.view(-1, 1)).squeeze(1)


def probabilities(head: str, logits: torch.Tensor) -> torch.Tensor:
    """(B, K) class probabilities: softmax over classes, or each class's own sigmoid."""
    scores = class_logits(head, logits.float())
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
    """Per sample, the classes predicted: top-1 (softmax, binary) or all above threshold."""
    probs = probabilities(head, logits)
    if head == "sigmoid":
        return [set(torch.nonzero(row >= threshold).flatten().tolist()) for row in probs]
    return [{int(index)} for index in probs.argmax(dim=1)]
