"""What a model returns, row by row: a logits tensor, or a detector's detections per image.

A classifier returns (B, K) logits, a segmenter (B, K, h, w); a detector in eval mode returns
torchvision's list of B dicts {"boxes": (n, 4) x0 y0 x1 y1, "labels": (n,), "scores": (n,)}.
The driver slices, joins and moves these outputs without caring which kind it holds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeGuard

import torch

Detections = Sequence[Mapping[str, torch.Tensor]]  # per image: boxes, labels, scores
ModelOutput = torch.Tensor | Detections
DETECTION_KEYS = ("boxes", "labels", "scores")


def is_detections(output: Any) -> TypeGuard[Detections]:
    """Whether `output` is a detector's: a list of dicts with boxes, labels and scores."""
    return isinstance(output, list | tuple) and all(
        isinstance(item, Mapping) and all(key in item for key in DETECTION_KEYS) for item in output
    )


def count(output: ModelOutput) -> int:
    """Rows (images) in the output."""
    return int(output.shape[0]) if isinstance(output, torch.Tensor) else len(output)


def take(output: ModelOutput, rows: slice) -> ModelOutput:
    """Some consecutive rows of the output."""
    return output[rows] if isinstance(output, torch.Tensor) else list(output[rows])


def joined(parts: Sequence[ModelOutput]) -> ModelOutput:
    """Outputs of consecutive rows -> one."""
    if isinstance(parts[0], torch.Tensor):
        return torch.cat(list(parts))  # type: ignore[arg-type]
    return [row for part in parts for row in part]


def detached(output: ModelOutput, device: str | torch.device | None = None) -> ModelOutput:
    """The output cut from its graph (and moved to `device` when given)."""
    if isinstance(output, torch.Tensor):
        output = output.detach()
        return output if device is None else output.to(device)
    return [
        {
            key: value.detach() if device is None else value.detach().to(device)
            for key, value in row.items()
        }
        for row in output
    ]


def first_scores(output: ModelOutput) -> torch.Tensor:
    """(B, ...) some differentiable scores of each row, for timing a backward: the first
    class's logits, or the sum of a detector's scores (which has no graph when it detects
    nothing)."""
    if isinstance(output, torch.Tensor):
        return output[:, 0]
    return torch.stack([row["scores"].sum() for row in output])
