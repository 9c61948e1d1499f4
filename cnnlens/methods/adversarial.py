"""Adversarial inputs by backpropagation: FGSM (Goodfellow 2015) and PGD (Madry 2018)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from cnnlens.methods.base import Method, MethodContext, MethodOutput, MethodParams, register
from cnnlens.methods.workload import Cost, Workload, cost_field
from cnnlens.models.hooks import HookSession, hook_session
from cnnlens.targets import class_index

# Maps the attacked pixels (one tensor per group of samples) to the model's input batch.
ToInput = Callable[[Sequence[torch.Tensor]], torch.Tensor]


class AdversarialParams(MethodParams):
    attack: Literal["fgsm", "pgd"] = "pgd"
    epsilon: float = Field(
        8.0,
        gt=0,
        le=255,
        description="L-inf budget, 0-255 pixel units; a saved image needs >= 1 (one 8-bit level)",
    )
    step_size: float = Field(2.0, gt=0, le=255, description="PGD step, 0-255 pixel units")
    steps: int = cost_field(10, "time", "PGD iterations (FGSM takes one)", le=1000)
    adversarial_target: int | str | None = Field(
        None, description="class to reach (index or label); None pushes away from the target"
    )
    random_start: bool = False  # start uniformly inside the ball (Madry et al.)
    seed: int = Field(0, ge=0)
    stop_on_success: bool = False  # freeze a sample once it succeeds
    output_size: Literal["image", "model"] = Field(
        "image",
        description="saved image (adversarial_image, POST /v1/adversarial): at the photo's own "
        "size or at the model's input size; the perturbation is optimized at that size",
    )


@register
class Adversarial(Method):
    """x' = Proj_{|p' - p|_inf <= eps, p' in [0,1]}(p' ± alpha * sign(grad_p CE(f(x'), y))).

    Untargeted: ascend the cross-entropy of the explained class y (Goodfellow et al.,
    "Explaining and Harnessing Adversarial Examples", ICLR 2015, FGSM: one step alpha = eps).
    Targeted: descend the cross-entropy of the chosen class t. Iterated with projection:
    Kurakin et al. 2017 (arXiv:1607.02533) and Madry et al., "Towards Deep Learning Models
    Resistant to Adversarial Attacks", ICLR 2018 (PGD). Works on pixels p in [0, 1] through
    the model's normalization. Shapes: x (B, 3, H, W) -> perturbation (B, 3, H, W), input space.

    This tensor-level run keeps float pixels; `adversarial_image` makes the 8-bit image a
    user saves, optimized through quantization and the preprocessing resize.
    """

    name = "adversarial"
    segmentation = False
    title = "Adversarial input (FGSM / PGD)"
    paper = "Goodfellow et al. 2015, arXiv:1412.6572; Madry et al. 2018, arXiv:1706.06083"
    Params = AdversarialParams
    kind = "standalone"
    produces = "image"

    def cost(self, params: AdversarialParams, workload: Workload) -> Cost:
        rows = workload.rows
        steps = 1 if params.attack == "fgsm" else params.steps  # stop_on_success: at most
        return Cost.of(
            forwards=(steps + 2) * rows,  # the original, each step, the result
            backwards=steps * rows,
            peak_rows=rows,
            gradient="input",
            resident_values=4 * rows * workload.input_values,  # x, pixels, bounds
        )

    def compute(self, context: MethodContext, params: AdversarialParams) -> MethodOutput:
        prep = context.preprocessing
        x = context.x.detach()
        original = prep.denormalize(x)  # (B, 3, H, W) pixels, in [0, 1] for real images
        scale = prep.pixel_scale(x)  # input-space size of one 0-1 pixel unit

        def to_input(pixels: Sequence[torch.Tensor]) -> torch.Tensor:
            return x + (pixels[0] - original) * scale  # exactly x where nothing moved

        epsilon = params.epsilon / 255.0
        # The ball around the original pixels, inside [0, 1] (out-of-range pixels may stay).
        low = torch.minimum((original - epsilon).clamp(min=0.0), original)
        high = torch.maximum((original + epsilon).clamp(max=1.0), original)
        with hook_session(context.model) as session, torch.enable_grad():
            with torch.no_grad():
                original_logits = session.forward(x, input_grad=False)
            labels, direction = attack_labels(
                params, context.targets, context.categories, original_logits.shape[1]
            )
            (pixels,) = projected_gradient_attack(
                session, to_input, [original], [low], [high], labels, direction, params
            )
            adversarial = to_input([pixels])
            with torch.no_grad():
                adversarial_logits = session.forward(adversarial, input_grad=False)
        original_probs = original_logits.detach().softmax(dim=1)
        adversarial_probs = adversarial_logits.detach().softmax(dim=1)
        extras = {
            "adversarial": adversarial.detach(),
            "perturbation_pixels": (pixels - original).detach() * 255.0,
            "original_class": original_probs.argmax(dim=1),
            "original_probability": original_probs.amax(dim=1),
            "adversarial_class": adversarial_probs.argmax(dim=1),
            "adversarial_probability": adversarial_probs.amax(dim=1),
            "success": succeeded(adversarial_logits, labels, direction),
            "target_probability": adversarial_probs.gather(1, labels.view(-1, 1)).squeeze(1),
        }
        return MethodOutput((adversarial - x).detach(), extras)


def attack_labels(
    params: AdversarialParams, targets: torch.Tensor, categories: Sequence[str], num_classes: int
) -> tuple[torch.Tensor, float]:
    """The labels the loss uses and its direction: +1 away from the target, -1 towards a goal."""
    if params.adversarial_target is None:
        return targets, 1.0
    chosen = class_index(params.adversarial_target, categories, num_classes)
    return torch.full_like(targets, chosen), -1.0


def projected_gradient_attack(
    session: HookSession,
    to_input: ToInput,
    start: Sequence[torch.Tensor],
    low: Sequence[torch.Tensor],
    high: Sequence[torch.Tensor],
    labels: torch.Tensor,
    direction: float,
    params: AdversarialParams,
) -> list[torch.Tensor]:
    """FGSM / PGD on pixel tensors (groups of samples, sizes may differ between groups),
    each step's gradient taken through `to_input`; returns the final pixels, inside the ball."""
    step = params.epsilon / 255.0 if params.attack == "fgsm" else params.step_size / 255.0
    steps = 1 if params.attack == "fgsm" else params.steps
    pixels = [tensor.clone() for tensor in start]
    if params.random_start:
        generator = torch.Generator().manual_seed(params.seed)
        for group, tensor in enumerate(pixels):
            noise = torch.rand(tensor.shape, generator=generator, dtype=tensor.dtype)
            moved = tensor + (2 * noise.to(tensor.device) - 1) * params.epsilon / 255.0
            pixels[group] = torch.maximum(torch.minimum(moved, high[group]), low[group])
    counts = [tensor.shape[0] for tensor in pixels]
    active = torch.ones_like(labels, dtype=torch.bool)  # (B,)
    for _ in range(steps):
        logits, gradients = _loss_gradient(session, to_input, pixels, labels)
        if params.stop_on_success:
            active &= ~succeeded(logits, labels, direction)
            if not active.any():
                break
        # sign(dL/dp) is what moves: the same step for every pixel (L-inf steepest ascent).
        for group, (mask, gradient) in enumerate(
            zip(torch.split(active, counts), gradients, strict=True)
        ):
            update = direction * step * gradient.sign() * mask.view(-1, 1, 1, 1)
            moved = pixels[group] + update
            pixels[group] = torch.maximum(torch.minimum(moved, high[group]), low[group])
    return pixels


def _loss_gradient(
    session: HookSession, to_input: ToInput, pixels: Sequence[torch.Tensor], labels: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Logits and d CE / d pixels, per sample (the summed loss keeps samples independent):
    d CE / d x from the session, then through `to_input` by the chain rule."""
    leaves = [tensor.detach().requires_grad_(True) for tensor in pixels]
    x = to_input(leaves)
    logits = session.forward(x, input_grad=True)  # (B, K), on a detached copy of x
    loss = F.cross_entropy(logits, labels, reduction="none")  # (B,)
    assert session.input is not None
    (input_gradient,) = session.gradients(loss, [session.input], retain_graph=False)
    gradients = torch.autograd.grad(x, leaves, grad_outputs=input_gradient, allow_unused=True)
    return logits.detach(), [
        torch.zeros_like(leaf) if gradient is None else gradient
        for leaf, gradient in zip(leaves, gradients, strict=True)
    ]


def succeeded(logits: torch.Tensor, labels: torch.Tensor, direction: float) -> torch.Tensor:
    """(B,) bool: the targeted class is predicted, or the explained class is no longer."""
    predicted = logits.detach().argmax(dim=1)
    return predicted == labels if direction < 0 else predicted != labels
