"""Target resolution: top-1 by default, a class index, a class label, or one per sample."""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence

import torch

from cnnlens.errors import TargetError, did_you_mean, shown

Target = int | str | None
Targets = Target | Sequence[int | str] | torch.Tensor


def class_index(target: int | str, categories: Sequence[str], num_classes: int) -> int:
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
