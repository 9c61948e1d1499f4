"""ROAD: RemOve And Debias (Rong et al., "A Consistent and Efficient Evaluation Strategy for
Attribution Methods", ICML 2022), as pytorch-grad-cam's `ROADCombined`, seeded.

At each percentile p of the map, pytorch-grad-cam's `RemoveMostRelevantFirst` imputes the
pixels at or above the p-th percentile (MoRF) and `RemoveLeastRelevantFirst` those at or
below the (100 - p)-th (LeRF), with its `NoisyLinearImputer` (each removed pixel the
weighted mean of its 8 neighbours, solved as one sparse system, plus N(0, 0.01^2) noise).
The score is (mean_p [f(x_LeRF,p) - f(x)] - mean_p [f(x_MoRF,p) - f(x)]) / 2, f the
probability of the explained class: higher is better (keeping the important pixels keeps
the class, removing them loses it). The noise comes from the global torch generator,
seeded with `seed` for the call (and restored after), drawn in `ROADCombined`'s order (LeRF
at every percentile, then MoRF), so the value equals `ROADCombined` under
`torch.manual_seed(seed)`; the imputed images are then scored in batches.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from pytorch_grad_cam.metrics.perturbation_confidence import (
    RemoveLeastRelevantFirst,
    RemoveMostRelevantFirst,
)
from pytorch_grad_cam.metrics.road import NoisyLinearImputer
from torch import nn

from cnnlens.compare.faithfulness import batched_probability, pass_rows
from cnnlens.compare.metrics import MapLike, as_2d
from cnnlens.compare.options import ROAD_PERCENTILES
from cnnlens.models.hooks import hook_session


def road_images(
    x: torch.Tensor, saliency: MapLike, percentiles: Sequence[int], seed: int = 0
) -> torch.Tensor:
    """(2 P, C, H, W) on the CPU: the LeRF images at each percentile, then the MoRF ones.

    Shapes: x (1, C, H, W); saliency (H, W) or (C, H, W) (colour maps: max |value|).
    """
    image = x[0].detach().float().cpu()
    cam = torch.from_numpy(as_2d(saliency).astype(np.float32))  # as pytorch-grad-cam's cams
    imputer = NoisyLinearImputer()
    orders = (RemoveLeastRelevantFirst, RemoveMostRelevantFirst)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        images = [order(p, imputer)(image, cam) for order in orders for p in percentiles]
    return torch.stack(images)


def road_score(
    module: nn.Module,
    x: torch.Tensor,
    saliency: MapLike,
    target: int,
    percentiles: Sequence[int] = ROAD_PERCENTILES,
    seed: int = 0,
    head: str = "softmax",
    region: torch.Tensor | None = None,
    batch_size: int = 16,
) -> float:
    """ROAD combined, (LeRF - MoRF) / 2 averaged over `percentiles`: 2 P imputations and
    2 P forwards (f(x) cancels out of the difference)."""
    images = road_images(x, saliency, percentiles, seed).to(x.device)
    rows = pass_rows(module, x, batch_size)
    with hook_session(module), torch.no_grad():
        probabilities = batched_probability(module, images, target, rows, head, region)
    least_relevant_first, most_relevant_first = probabilities.double().view(2, -1).mean(dim=1)
    return float(least_relevant_first - most_relevant_first) / 2
