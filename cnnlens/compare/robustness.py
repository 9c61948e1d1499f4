"""Infidelity and max-sensitivity of a map, through `captum.metrics`, seeded.

Both take the map normalized by its largest |value| (Quantus's default `normalise_by_max`),
so that methods of different scales compare. Perturbations are drawn once from
`torch.Generator().manual_seed(seed)` on the CPU, the i-th perturbed input taking row i:
- infidelity (Yeh et al., "On the (In)fidelity and Sensitivity of Explanations", NeurIPS
  2019): I = noise * randn(n, C, H, W), INFD = E_I[(I . Phi - (f(x) - f(x - I)))^2], f the
  probability of the explained class (as the deletion curves); a one-channel map is the
  same attribution for every colour channel. Lower is better.
- sensitivity_max (same paper): delta = radius * (2 rand(n, C, H, W) - 1), uniform in
  [-r, r) as captum's default perturbation; SENS = max_delta ||Phi(x + delta) - Phi(x)|| /
  ||Phi(x)|| (Frobenius norms), the class kept fixed. Lower is better.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from captum.metrics import infidelity, sensitivity_max
from torch import nn

from cnnlens.compare.faithfulness import batched_probability, pass_rows
from cnnlens.methods.run import run_methods
from cnnlens.models.hooks import hook_session
from cnnlens.models.loaded import LoadedModel
from cnnlens.models.regions import Region


def max_normalized(maps: torch.Tensor) -> torch.Tensor:
    """(B, ...) each row divided by its largest |value| (all-zero rows stay zero)."""
    scale = maps.flatten(1).abs().amax(dim=1).clamp_min(torch.finfo(maps.dtype).tiny)
    return maps / scale.view(-1, *([1] * (maps.dim() - 1)))


def seeded_rows(
    draw: Callable[..., torch.Tensor], shape: tuple[int, ...], seed: int
) -> Callable[[int], torch.Tensor]:
    """Rows of one seeded draw (`torch.randn` or `torch.rand`) of `shape`, handed out in
    order: however captum splits its samples into batches, sample i gets row i."""
    rows = draw(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float32)
    cursor = 0

    def take(count: int) -> torch.Tensor:
        nonlocal cursor
        chunk = rows[cursor : cursor + count]
        cursor += count
        return chunk

    return take


def infidelity_score(
    module: nn.Module,
    x: torch.Tensor,
    saliency: torch.Tensor,
    target: int,
    n_perturb_samples: int = 10,
    noise: float = 0.003,
    seed: int = 0,
    head: str = "softmax",
    region: torch.Tensor | None = None,
    batch_size: int = 16,
) -> float:
    """captum.metrics.infidelity of the max-normalized map, perturbations I ~ N(0, noise^2).

    Shapes: x (1, C, H, W) preprocessed; saliency (1, 1 or C, H, W) in input space.
    """
    attributions = max_normalized(saliency.float().to(x.device)).expand_as(x)  # (1, C, H, W)
    take = seeded_rows(torch.randn, (n_perturb_samples, *x.shape[1:]), seed)

    def perturb(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        perturbation = take(len(inputs)).to(inputs) * noise
        return perturbation, inputs - perturbation

    rows = pass_rows(module, x, batch_size)

    def probability(inputs: torch.Tensor) -> torch.Tensor:
        return batched_probability(module, inputs, target, rows, head, region)

    with hook_session(module), torch.no_grad():  # all samples in one call: x is run once
        value = infidelity(
            probability, perturb, x.detach(), attributions, n_perturb_samples=n_perturb_samples
        )
    return float(value[0])


def sensitivity_score(
    model: LoadedModel,
    x: torch.Tensor,
    method: str,
    params: Mapping[str, Any],
    saliency: torch.Tensor,
    target: int,
    layer: str | None = None,
    region: Region = None,
    n_perturb_samples: int = 10,
    radius: float = 0.02,
    seed: int = 0,
) -> float:
    """captum.metrics.sensitivity_max of `method`'s max-normalized map for class `target`.

    `saliency` (1, C, H, W) is the method's map of x itself, which captum asks for first.
    """
    take = seeded_rows(torch.rand, (n_perturb_samples, *x.shape[1:]), seed)
    known: list[torch.Tensor] = [max_normalized(saliency.float().to(x.device))]

    def perturb(inputs: torch.Tensor) -> torch.Tensor:
        return inputs + (2 * take(len(inputs)).to(inputs) - 1) * radius

    def explain(inputs: torch.Tensor | tuple[torch.Tensor]) -> Any:
        """Captum gives x as a 1-tuple first (and wants a tuple back), then perturbed batches."""
        if isinstance(inputs, tuple):  # x: its map is already there
            return (known.pop(),)
        with torch.enable_grad():  # captum calls this under no_grad
            result = run_methods(
                model, inputs, [(method, dict(params))], target=target, layer=layer,
                region=region,
            )  # fmt: skip
        return max_normalized(result.outputs[method].map.float())

    value = sensitivity_max(explain, x.detach(), perturb, n_perturb_samples=n_perturb_samples)
    return float(value[0])
