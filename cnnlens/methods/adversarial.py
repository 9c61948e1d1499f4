"""Adversarial inputs by backpropagation: FGSM (Goodfellow 2015) and PGD (Madry 2018)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from cnnlens.methods.base import Method, MethodContext, MethodOutput, MethodParams, register
from cnnlens.methods.targets import class_index
from cnnlens.methods.workload import Cost, Workload
from cnnlens.models.hooks import HookSession, hook_session


class AdversarialParams(MethodParams):
    attack: Literal["fgsm", "pgd"] = "pgd"
    epsilon: float = Field(8.0, gt=0, le=255, description="L-inf budget, 0-255 pixel units")
    step_size: float = Field(2.0, gt=0, le=255, description="PGD step, 0-255 pixel units")
    steps: int = Field(
        10,
        ge=1,
        le=1000,
        description="PGD iterations (FGSM takes one)",
        json_schema_extra={"drives_cost": "time"},
    )
    adversarial_target: int | str | None = Field(
        None, description="class to reach (index or label); None pushes away from the target"
    )
    random_start: bool = False  # start uniformly inside the ball (Madry et al.)
    seed: int = Field(0, ge=0)
    stop_on_success: bool = False  # freeze a sample once it succeeds


@register
class Adversarial(Method):
    """x' = Proj_{|p' - p|_inf <= eps, p' in [0,1]}(p' ± alpha * sign(grad_p CE(f(x'), y))).

    Untargeted: ascend the cross-entropy of the explained class y (Goodfellow et al.,
    "Explaining and Harnessing Adversarial Examples", ICLR 2015, FGSM: one step alpha = eps).
    Targeted: descend the cross-entropy of the chosen class t. Iterated with projection:
    Kurakin et al. 2017 (arXiv:1607.02533) and Madry et al., "Towards Deep Learning Models
    Resistant to Adversarial Attacks", ICLR 2018 (PGD). Works on pixels p in [0, 1] through
    the model's normalization. Shapes: x (B, 3, H, W) -> perturbation (B, 3, H, W), input space.
    """

    name = "adversarial"
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

        def to_input(pixels: torch.Tensor) -> torch.Tensor:
            return x + (pixels - original) * scale  # exactly x where nothing moved

        epsilon, step = params.epsilon / 255.0, params.step_size / 255.0
        # The ball around the original pixels, inside [0, 1] (out-of-range pixels may stay).
        low = torch.minimum((original - epsilon).clamp(min=0.0), original)
        high = torch.maximum((original + epsilon).clamp(max=1.0), original)
        steps = 1 if params.attack == "fgsm" else params.steps
        if params.attack == "fgsm":
            step = epsilon
        with hook_session(context.model) as session, torch.enable_grad():
            with torch.no_grad():
                original_logits = session.forward(x, input_grad=False)
            labels, direction = context.targets, 1.0  # ascend CE: away from the label
            if params.adversarial_target is not None:
                chosen = class_index(
                    params.adversarial_target, context.categories, original_logits.shape[1]
                )
                labels, direction = torch.full_like(context.targets, chosen), -1.0
            pixels = original.clone()
            if params.random_start:
                generator = torch.Generator().manual_seed(params.seed)
                noise = torch.rand(original.shape, generator=generator, dtype=original.dtype)
                pixels = pixels + (2 * noise.to(original.device) - 1) * epsilon
                pixels = torch.maximum(torch.minimum(pixels, high), low)
            active = torch.ones_like(labels, dtype=torch.bool)  # (B,)
            for _ in range(steps):
                logits, gradient = _loss_gradient(session, to_input(pixels), labels)
                if params.stop_on_success:
                    active &= ~_succeeded(logits, labels, direction)
                    if not active.any():
                        break
                # sign(dL/dp) = sign(dL/dx / std): the same sign, std > 0.
                update = direction * step * gradient.sign() * active.view(-1, 1, 1, 1)
                pixels = torch.maximum(torch.minimum(pixels + update, high), low)
            adversarial = to_input(pixels)
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
            "success": _succeeded(adversarial_logits, labels, direction),
            "target_probability": adversarial_probs.gather(1, labels.view(-1, 1)).squeeze(1),
        }
        return MethodOutput((adversarial - x).detach(), extras)


def _loss_gradient(
    session: HookSession, x: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and d CE / d x, per sample (the summed loss keeps samples independent)."""
    logits = session.forward(x, input_grad=True)  # (B, K)
    loss = F.cross_entropy(logits, labels, reduction="none")  # (B,)
    assert session.input is not None
    (gradient,) = session.gradients(loss, [session.input], retain_graph=False)
    return logits.detach(), gradient


def _succeeded(logits: torch.Tensor, labels: torch.Tensor, direction: float) -> torch.Tensor:
    """(B,) bool: the targeted class is predicted, or the explained class is no longer."""
    predicted = logits.detach().argmax(dim=1)
    return predicted == labels if direction < 0 else predicted != labels
