"""Class model visualization by activation maximization (Simonyan et al. 2014; Olah et al. 2017)."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from cnnlens.methods._image_parameterization import FourierImage, PixelImage
from cnnlens.methods.base import Method, MethodContext, MethodOutput, MethodParams, register
from cnnlens.methods.workload import Cost, Workload, chunked, cost_field
from cnnlens.models.hooks import HookSession, hook_session
from cnnlens.targets import ChannelTarget


class ActivationMaxParams(MethodParams):
    steps: int = cost_field(64, "time", le=2000)
    lr: float = Field(0.05, gt=0, le=10, description="Adam (or SGD) learning rate")
    optimizer: Literal["adam", "sgd"] = "adam"
    l2: float = Field(1e-4, ge=0, description="lambda in S_c(I) - lambda ||I||^2, input space")
    jitter: int = Field(8, ge=0, le=64, description="random shift per step, pixels")
    blur_every: int = Field(4, ge=0, le=2000, description="blur every n steps; 0 = never")
    blur_sigma: float = Field(0.5, ge=0, le=10, description="blur width, pixels")
    parameterization: Literal["pixel", "fourier"] = "fourier"
    init_std: float = Field(0.01, ge=0, le=1, description="start noise, 0-1 pixel units")
    seed: int = Field(0, ge=0)
    channel: int | None = Field(
        None, ge=0, description="maximize this channel of the layer instead of the class"
    )
    batch_size: int = cost_field(
        8, "memory", "images optimized at once (bounds memory; the result is the same)"
    )


@register
class ActivationMax(Method):
    """I* = argmax_I S_c(I) - lambda ||I||_2^2, by gradient ascent from a near-gray image.

    Simonyan et al., "Deep Inside Convolutional Networks", 2014, section 2: S_c is the
    class logit, not the softmax; I is the zero-centred (input-space) image. With `channel`,
    S is the mean activation of that channel of the layer. Legibility comes from random jitter
    and periodic Gaussian blur (Yosinski et al. 2015), or the decorrelated Fourier
    parameterization of Olah et al., "Feature Visualization", Distill 2017.
    Shapes: one image per sample -> (B, 3, H, W) in input space.
    """

    name = "activation_max"
    segmentation = False
    title = "Activation maximization"
    paper = "Simonyan et al. 2014, arXiv:1312.6034; Olah et al. 2017, doi:10.23915/distill.00007"
    Params = ActivationMaxParams
    kind = "standalone"
    produces = "image"
    uses_layer = True  # only with `channel`
    uses_image = False

    def cost(self, params: ActivationMaxParams, workload: Workload) -> Cost:
        rows = workload.rows
        return Cost.of(
            forwards=(params.steps + 1) * rows,  # each step, then the result
            backwards=params.steps * rows,
            peak_rows=chunked(rows, params.batch_size),
            gradient="input",
            resident_values=2 * rows * workload.input_values,  # the start and the results
        )

    def compute(self, context: MethodContext, params: ActivationMaxParams) -> MethodOutput:
        prep = context.preprocessing
        shape = tuple(context.x.shape)
        generator = torch.Generator().manual_seed(params.seed)
        # Every draw happens up front, in the order of one whole-batch run, so each chunk of
        # images sees the same start and shifts: the result does not depend on batch_size.
        start = _start_noise(params, shape, prep.mean, generator)
        shifts = [_shift(params.jitter, generator) for _ in range(params.steps)]
        parts = []
        for first in range(0, shape[0], params.batch_size):
            rows = slice(first, first + params.batch_size)
            parts.append(self._optimize(context, params, start[rows], rows, shifts))
        images = torch.cat([image for image, _, _ in parts])
        logits = torch.cat([logit for _, logit, _ in parts])
        score = torch.cat([value for _, _, value in parts])
        probabilities = logits.softmax(dim=1)
        extras = {
            "score": score,  # the maximized objective on the returned image
            "logit": logits.gather(1, context.targets.view(-1, 1)).squeeze(1),
            "probability": probabilities.gather(1, context.targets.view(-1, 1)).squeeze(1),
            "top1_class": probabilities.argmax(dim=1),
            "top1_probability": probabilities.amax(dim=1),
        }
        return MethodOutput(images, extras)

    def _optimize(
        self,
        context: MethodContext,
        params: ActivationMaxParams,
        start: torch.Tensor,
        rows: slice,
        shifts: list[tuple[int, int]],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Gradient ascent for the images of `rows`: (images, logits, objective), detached."""
        prep = context.preprocessing
        targets = context.targets[rows]
        layers = [context.layer] if params.channel is not None else []
        image = _image(params, start, context.x.shape[-2:]).to(context.x)
        optimizer_class = torch.optim.Adam if params.optimizer == "adam" else torch.optim.SGD
        optimizer = optimizer_class(image.parameters(), lr=params.lr)
        with hook_session(context.model, layers=layers) as session, torch.enable_grad():
            for step, (dy, dx) in enumerate(shifts):
                x = prep.normalize(image.pixels())  # (n, 3, H, W)
                shifted = torch.roll(x, shifts=(dy, dx), dims=(2, 3)) if dy or dx else x
                logits = session.forward(shifted, input_grad=True)
                score = _objective(logits, session, context.layer, targets, params.channel)
                assert session.input is not None
                (gradient,) = session.gradients(score, [session.input], retain_graph=False)
                # Chain rule through the jitter and parameterization, minus the L2 prior.
                loss = params.l2 * x.pow(2).sum() - (shifted * gradient).sum()
                optimizer.zero_grad(set_to_none=True)
                torch.autograd.backward(loss)
                optimizer.step()
                image.project()
                if params.blur_every and (step + 1) % params.blur_every == 0:
                    image.blur(params.blur_sigma)
            with torch.no_grad():
                final = prep.normalize(image.pixels())
                logits = session.forward(final, input_grad=False)
                score = _objective(logits, session, context.layer, targets, params.channel)
        return final.detach(), logits.detach(), score.detach()


def _objective(
    logits: torch.Tensor,
    session: HookSession,
    layer: str,
    targets: torch.Tensor,
    channel: int | None,
) -> torch.Tensor:
    """(B,) class logit of each sample's target, or the mean activation of one channel."""
    if channel is None:
        return logits.gather(1, targets.view(-1, 1)).squeeze(1)
    return ChannelTarget(layer, channel).score(session.activations[layer])


def _start_noise(
    params: ActivationMaxParams,
    shape: tuple[int, ...],
    mean: tuple[float, ...],
    generator: torch.Generator,
) -> torch.Tensor:
    """The starting point of every image: a spectrum (Fourier) or near-gray pixels."""
    batch, _, height, width = shape
    if params.parameterization == "fourier":
        spectrum_shape = FourierImage.spectrum_shape(batch, height, width)
        return torch.randn(spectrum_shape, generator=generator) * params.init_std
    gray = torch.tensor(mean).view(1, 3, 1, 1).expand(*shape)
    noise = torch.randn(shape, generator=generator) * params.init_std
    return (gray + noise).clamp(0.0, 1.0)


def _image(
    params: ActivationMaxParams, start: torch.Tensor, size: torch.Size
) -> PixelImage | FourierImage:
    if params.parameterization == "fourier":
        return FourierImage((start.shape[0], 3, *size), start)
    return PixelImage(start)


def _shift(pixels: int, generator: torch.Generator) -> tuple[int, int]:
    """A random roll of up to `pixels` in each direction (none when pixels is 0)."""
    if pixels == 0:
        return 0, 0
    dy, dx = (int(v) for v in torch.randint(-pixels, pixels + 1, (2,), generator=generator))
    return dy, dx
