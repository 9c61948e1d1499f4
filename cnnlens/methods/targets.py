"""Target resolution: top-1 by default, a class index, a class label, or one per sample."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from cnnlens.errors import TargetError, did_you_mean

Target = int | str | None
Targets = Target | Sequence[int | str] | torch.Tensor


def class_index(target: int | str, categories: Sequence[str], num_classes: int) -> int:
    """One class given as an index, a numeric string or a label (case-insensitive)."""
    if isinstance(target, bool):
        raise TargetError(f"target must be a class index or label, not {target!r}")
    if isinstance(target, str):
        text = target.strip()
        if text.lstrip("-").isdigit():
            target = int(text)
        else:
            lowered = text.lower()
            for index, label in enumerate(categories):
                if label.lower() == lowered:
                    return index
            raise TargetError(f"unknown class label {text!r}{did_you_mean(text, categories)}")
    if not isinstance(target, int):
        raise TargetError(f"target must be a class index or label, not {target!r}")
    if not 0 <= target < num_classes:
        raise TargetError(f"class index {target} is out of range 0..{num_classes - 1}")
    return target


def resolve_targets(
    target: Targets, logits: torch.Tensor | None, categories: Sequence[str], batch: int,
    num_classes: int,
) -> torch.Tensor:  # fmt: skip
    """(B,) long tensor of class indices; None means each sample's top-1 from `logits`."""
    if target is None:
        if logits is None:
            raise TargetError("a target is needed when no forward pass is available")
        return logits.argmax(dim=1)
    if isinstance(target, torch.Tensor):
        values: list[int | str] = [int(v) for v in target.flatten().tolist()]
    elif isinstance(target, int | str):
        values = [target] * batch
    else:
        values = list(target)
    if len(values) != batch:
        raise TargetError(f"got {len(values)} targets for a batch of {batch}")
    indices = [class_index(value, categories, num_classes) for value in values]
    return torch.tensor(indices, dtype=torch.long)
