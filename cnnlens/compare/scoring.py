"""The scores of one map of one image, besides its curves and the randomization check:
infidelity, sensitivity_max, road, sparseness and complexity (whichever are asked for)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cnnlens.compare.metrics import complexity, sparseness
from cnnlens.compare.options import CompareOptions
from cnnlens.models.loaded import LoadedModel
from cnnlens.models.regions import Region


@dataclass
class Explained:
    """What every score of one image measures: the model, its input and the explained class."""

    model: LoadedModel
    x: torch.Tensor  # (1, 3, H, W) preprocessed
    target: int
    weights: torch.Tensor | None  # segmentation: (h, w) region weights at the logits' size
    region: Region  # segmentation: the clean image's region in input pixels, for new maps
    layer: str | None
    params: Mapping[str, Mapping[str, Any]]


def map_scores(
    explained: Explained, method: str | None, raw: np.ndarray, options: CompareOptions
) -> dict[str, float]:
    """The asked-for scores of map `raw` (C, H, W); `method` None for a map no method made
    (the random reference), which has no sensitivity."""
    wanted = set(options.scores)
    model, x, target = explained.model, explained.x, explained.target
    head, weights = model.head, explained.weights
    saliency = torch.from_numpy(np.ascontiguousarray(raw))[None]  # (1, C, H, W)
    scores: dict[str, float] = {}
    if "infidelity" in wanted:
        from cnnlens.compare.robustness import infidelity_score

        scores["infidelity"] = infidelity_score(
            model.module, x, saliency, target, options.n_perturb_samples,
            options.infidelity_noise, options.seed, head, weights, options.batch_size,
        )  # fmt: skip
    if "sensitivity_max" in wanted and method is not None:
        from cnnlens.compare.robustness import sensitivity_score

        scores["sensitivity_max"] = sensitivity_score(
            model, x, method, explained.params.get(method, {}), saliency, target,
            explained.layer, explained.region, options.n_perturb_samples,
            options.perturb_radius, options.seed,
        )  # fmt: skip
    if "road" in wanted:
        from cnnlens.compare.road import road_score

        scores["road"] = road_score(
            model.module, x, raw, target, options.road_percentiles, options.seed, head,
            weights, options.batch_size,
        )  # fmt: skip
    if "sparseness" in wanted:
        scores["sparseness"] = sparseness(raw)
    if "complexity" in wanted:
        scores["complexity"] = complexity(raw)
    return scores
