"""What a request to a detector explains: the rows (label, box) found before its methods run.

A detector's default is every detection above its score threshold, so the rows of such a
request are known only after one forward: it runs on the model's worker like any work, and
the request is then admitted (budgeted) again with its real number of rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image

from cnnlens.models.detection import Detection, detect, rows_to_explain
from cnnlens.models.loaded import LoadedModel
from cnnlens.service.handlers.explain import ExplainInput
from cnnlens.service.requests import ExplainRequest, input_box
from cnnlens.service.runtime.state import ServiceState


def run_detect(model: LoadedModel, xs: Sequence[torch.Tensor]) -> list[list[Detection]]:
    """Worker side: each preprocessed (1, 3, H, W) image's detections, one batched forward."""
    return detect(model, torch.cat(list(xs)))


async def detection_input(
    state: ServiceState,
    request: ExplainRequest,
    x: torch.Tensor,
    picture: Image.Image,
    shown: tuple[int, int],
    deadline: float,
) -> tuple[ExplainInput, float]:
    """The work of an explain request to a detector and its cost: the labels (empty: each
    box's best match) and input-pixel boxes it explains (`rows_to_explain`: the box given,
    or the detections found), at most `limits.max_targets` rows, budgeted at `shown`
    (width, height)."""
    model = request.model
    box = input_box(model, picture, request.region)
    found = None
    if box is None:
        found = await state.run(
            model, run_detect, x, cost=1.0, batch_key=("detect",), deadline=deadline
        )
    limit = state.settings.limits.max_targets
    labels, boxes = rows_to_explain(model, found, list(request.targets), box, limit)
    cost = state.admit(model, request.budget(*shown, rows=len(boxes)))
    work = ExplainInput(request.plan, x, tuple(labels or ()), None, tuple(boxes))
    return work, cost
