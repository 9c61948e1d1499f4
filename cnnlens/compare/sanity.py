"""Model-randomization sanity check (Adebayo et al., "Sanity Checks for Saliency Maps",
NeurIPS 2018, section 3.1: cascading randomization from the logits down)."""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnlens.compare.metrics import as_2d, spearman, ssim
from cnnlens.methods.run import run_methods
from cnnlens.models.loaded import LoadedModel
from cnnlens.models.regions import Region
from cnnlens.targets import Target


@dataclass
class RandomizationResult:
    """Similarity of each method's map before and after randomizing the top blocks, per stage."""

    stages: list[str]  # stage i has randomized stages[0..i] (the top of the network first)
    similarity: dict[str, list[float]]  # by method: Spearman of |map|, one value per stage
    ssim: dict[str, list[float]] = field(default_factory=dict)  # by method, when asked for

    def mean_similarity(self, method: str) -> float:
        """The method's similarity averaged over the stages (NaN when none is defined)."""
        return _finite_mean(self.similarity[method])

    def mean_ssim(self, method: str) -> float | None:
        return _finite_mean(self.ssim[method]) if method in self.ssim else None


def parameter_blocks(module: nn.Module, depth: int = 2) -> list[str]:
    """Module-name prefixes (`depth` components) that own parameters, in definition order.

    For timm's EfficientNet: conv_stem, bn1, blocks.0 … blocks.6, conv_head, bn2, classifier.
    """
    blocks: list[str] = []
    for name, _ in module.named_parameters():
        prefix = ".".join(name.split(".")[:-1][:depth]) or name
        if prefix not in blocks:
            blocks.append(prefix)
    return blocks


def randomize_block(module: nn.Module, prefix: str, seed: int) -> None:
    """Re-initialize every submodule under `prefix` with its own initializer, seeded
    (the global RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name, child in module.named_modules():
            inside = name == prefix or name.startswith(prefix + ".")
            if inside and hasattr(child, "reset_parameters"):
                with torch.no_grad():
                    child.reset_parameters()


def randomized_copy(model: LoadedModel) -> LoadedModel:
    """A deep copy of the model to randomize: the shared instance is never touched."""
    module = copy.deepcopy(model.module)
    duplicate = dataclasses.replace(
        model,
        module=module,
        weights_sha256=None,
        weights_source="randomized copy",
    )
    duplicate.__dict__["layers"] = model.layers  # same architecture: no need to trace again
    return duplicate


def cascading_randomization(
    model: LoadedModel,
    x: torch.Tensor,
    methods: Sequence[str],
    target: int | Target,
    original_maps: Mapping[str, torch.Tensor],
    layer: str | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    stages: int = 3,
    seed: int = 0,
    with_ssim: bool = False,
    region: Region = None,
    on_stage: Callable[[], None] | None = None,
) -> RandomizationResult:
    """Randomize the top `stages` parameter blocks one after another, on a deep copy, and
    compare each method's map with the original one: Spearman rho of |map| (and SSIM).

    A map that does not depend on the weights (an edge detector) stays similar (rho near 1):
    it fails the check. A map that became constant shares no ranking with the original and
    counts as 0. Shapes: x (1, 3, H, W); original_maps[method] (1, C, H, W) in input space.
    Segmentation models: `region` (a box or an (H, W) mask in input pixels) is the original
    target's region, kept fixed (the randomized model predicts other pixels). `on_stage` is
    called after each stage (progress).
    """
    params = params or {}
    blocks = parameter_blocks(model.module)
    chosen = list(reversed(blocks))[: max(1, min(stages, len(blocks)))]
    duplicate = randomized_copy(model)
    similarity: dict[str, list[float]] = {name: [] for name in methods}
    structural: dict[str, list[float]] = {name: [] for name in methods} if with_ssim else {}
    for index, prefix in enumerate(chosen):
        randomize_block(duplicate.module, prefix, seed + index)
        result = run_methods(
            duplicate,
            x,
            [(name, dict(params.get(name, {}))) for name in methods],
            target=target,
            layer=layer,
            region=region,
        )
        for name in methods:
            before = original_maps[name][0].abs()
            after = result.outputs[name].map[0].abs()
            similarity[name].append(_rank_similarity(before, after))
            if with_ssim:
                structural[name].append(ssim(before, after))
        if on_stage is not None:
            on_stage()
    del duplicate
    return RandomizationResult(stages=chosen, similarity=similarity, ssim=structural)


def _rank_similarity(before: torch.Tensor, after: torch.Tensor) -> float:
    rho = spearman(before, after)
    if math.isnan(rho) and np.ptp(as_2d(before)) > 0:
        return 0.0  # the randomized map is constant: no ranking left in common
    return rho


def _finite_mean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan
