"""What a request to a detector explains: the rows (label, box) found before its methods run.

A detector's default is every detection above its score threshold, so the rows of such a
request are known only after one forward: it runs on the model's worker like any work, and
the request is then admitted (budgeted) with its real number of rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from cnnlens.models.detection import Detection, detect, rows_to_explain
from cnnlens.models.heads import DETECTION
from cnnlens.models.loaded import LoadedModel
from cnnlens.models.regions import Box, RegionError
from cnnlens.service.state import ServiceState


def run_detect(model: LoadedModel, xs: Sequence[torch.Tensor]) -> list[list[Detection]]:
    """Worker side: each preprocessed (1, 3, H, W) image's detections, one batched forward."""
    return detect(model, torch.cat(list(xs)))


async def detection_rows(
    state: ServiceState,
    model: LoadedModel,
    x: torch.Tensor,
    labels: list[int],
    box: Box | None,
    deadline: float,
) -> tuple[list[int] | None, list[Box]]:
    """The labels (None: each box's best match) and input-pixel boxes a request explains
    (`rows_to_explain`), at most `limits.max_targets` rows."""
    found = None
    if box is None:
        found = await state.run(
            model.name, run_detect, x, cost=1.0, batch_key=("detect",), deadline=deadline
        )
    return rows_to_explain(model, found, labels, box, state.settings.limits.max_targets)


def check_detection_fields(model: LoadedModel, region: Box | None, box: Box | None) -> None:
    """`box` chooses a detector's detection, `region` a segmenter's pixels: not the other way."""
    if model.head == DETECTION and region is not None:
        raise RegionError("a detector's target is chosen by box=, not region=")
    if model.head != DETECTION and box is not None:
        raise RegionError("box= chooses a detection: it applies to detectors only")
