"""Activation maximization: optimizer steps match analytic gradients; a legible class image."""

from __future__ import annotations

import weakref
from collections import OrderedDict
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from cnnlens.errors import InvalidParamsError
from cnnlens.methods import MethodOutput, run_methods
from cnnlens.methods._image_parameterization import FourierImage, gaussian_blur
from cnnlens.models import LoadedModel, Preprocessing, count_hooks
from cnnlens.targets import Classes

BELL_PEPPER = 945
SIZE = 4
PIXELS = SIZE * SIZE
CONV = np.array([[1.0, -2.0, 0.5], [-1.0, 1.0, 2.0]])  # (K=2, C=3)
CONV_BIAS = 5.0  # keeps every ReLU open near the gray start, so the net is linear there
FC = np.array([[2.0, -1.0], [-0.5, 3.0]])  # (classes=2, K=2)
STD = np.array(Preprocessing().std).reshape(1, 3, 1, 1)  # bare modules get ImageNet statistics
# Straight from the pixel-space parameterization, with a step only where asked for.
ANALYTIC = {"parameterization": "pixel", "jitter": 0, "blur_every": 0, "init_std": 0.0}


def biased_tiny_cnn(probe: nn.Module | None = None) -> nn.Sequential:
    """conv 1x1 (bias 5) -> ReLU -> GAP -> linear: S_t = FC[t] . mean_p ReLU(W x(p) + 5) + b_t."""
    conv, fc = nn.Conv2d(3, 2, 1), nn.Linear(2, 2)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(CONV, dtype=torch.float32).view(2, 3, 1, 1))
        assert conv.bias is not None
        conv.bias.fill_(CONV_BIAS)
        fc.weight.copy_(torch.tensor(FC, dtype=torch.float32))
        fc.bias.copy_(torch.tensor([0.1, -0.2]))
    layers = OrderedDict(conv=conv, relu=nn.ReLU(), pool=nn.AdaptiveAvgPool2d(1))
    if probe is not None:
        layers["probe"] = probe
    layers.update(flatten=nn.Flatten(), fc=fc)
    return nn.Sequential(layers)


def score_gradient(target: int) -> np.ndarray:
    """dS_t/dx_c(p) = sum_k FC[t, k] W[k, c] / P with every ReLU open: (1, 3, 1, 1)."""
    return (FC[target] @ CONV / PIXELS).reshape(1, 3, 1, 1)


def maximize(
    model: nn.Module | LoadedModel, x: torch.Tensor, target: Classes = None, **params: Any
) -> MethodOutput:
    return run_methods(model, x, [("activation_max", params)], target=target).outputs[
        "activation_max"
    ]


def gray(batch: int = 1) -> torch.Tensor:
    return torch.zeros(batch, 3, SIZE, SIZE)


@pytest.mark.parametrize("target", [0, 1])
def test_one_sgd_step_follows_the_analytic_gradient(target: int) -> None:
    lr = 0.01
    output = maximize(
        biased_tiny_cnn(), gray(), target, optimizer="sgd", steps=1, lr=lr, **ANALYTIC
    )
    # p1 = mean + lr dS/dp = mean + lr g / std, so x1 = (p1 - mean) / std = lr g / std^2.
    expected = np.broadcast_to(lr * score_gradient(target) / STD**2, (1, 3, SIZE, SIZE))
    np.testing.assert_allclose(output.map.numpy(), expected, rtol=1e-4, atol=1e-7)


def test_the_l2_prior_pulls_the_second_step_back() -> None:
    lr, l2 = 0.01, 1.0
    params = dict(ANALYTIC, optimizer="sgd", steps=2, lr=lr, l2=l2)
    output = maximize(biased_tiny_cnn(), gray(), 0, **params)
    g = score_gradient(0)
    first = lr * g / STD**2  # the prior's gradient -2 lambda x is zero at x0 = 0
    second = first + lr * (g - 2 * l2 * first) / STD**2
    expected = np.broadcast_to(second, (1, 3, SIZE, SIZE))
    np.testing.assert_allclose(output.map.numpy(), expected, rtol=1e-4, atol=1e-7)


def test_adams_first_step_is_lr_times_the_gradient_sign() -> None:
    lr = 0.02
    output = maximize(biased_tiny_cnn(), gray(), 1, steps=1, lr=lr, **ANALYTIC)
    expected = np.broadcast_to(lr * np.sign(score_gradient(1)) / STD, (1, 3, SIZE, SIZE))
    np.testing.assert_allclose(output.map.numpy(), expected, rtol=1e-4, atol=1e-7)


def test_channel_objective_is_the_mean_activation() -> None:
    lr, channel = 0.01, 1
    model = biased_tiny_cnn()
    output = run_methods(
        model,
        gray(),
        [("activation_max", dict(ANALYTIC, optimizer="sgd", steps=1, lr=lr, channel=channel))],
        layer="relu",
    ).outputs["activation_max"]
    # d mean_p ReLU(a_k(p)) / dx_c(p) = W[k, c] / P.
    expected = lr * (CONV[channel] / PIXELS).reshape(1, 3, 1, 1) / STD**2
    np.testing.assert_allclose(
        output.map.numpy(), np.broadcast_to(expected, output.map.shape), rtol=1e-5
    )
    with torch.no_grad():
        activation = model[1](model[0](output.map))[:, channel].mean()  # relu(conv(x))
    assert output.extras["score"].item() == pytest.approx(activation.item(), rel=1e-6)


def test_a_bad_channel_is_a_params_error() -> None:
    model = biased_tiny_cnn()
    with pytest.raises(InvalidParamsError, match="channel 2"):
        run_methods(model, gray(), [("activation_max", {"channel": 2})], layer="relu")
    assert count_hooks(model) == 0


def test_extras_describe_the_returned_image() -> None:
    model = biased_tiny_cnn()
    output = maximize(model, gray(2), [0, 1], steps=5, jitter=1, blur_every=2, seed=4)
    with torch.no_grad():
        logits = model(output.map)
    targets = torch.tensor([0, 1])
    torch.testing.assert_close(output.extras["logit"], logits[[0, 1], targets])
    torch.testing.assert_close(output.extras["score"], output.extras["logit"])
    probabilities = logits.softmax(dim=1)
    torch.testing.assert_close(output.extras["probability"], probabilities[[0, 1], targets])
    assert output.extras["top1_class"].tolist() == probabilities.argmax(dim=1).tolist()


def test_batch_rows_are_optimized_independently() -> None:
    model = biased_tiny_cnn()
    params = dict(ANALYTIC, steps=3, l2=0.5)
    batch = maximize(model, gray(2), [0, 1], **params).map
    for row in (0, 1):
        torch.testing.assert_close(batch[row : row + 1], maximize(model, gray(), row, **params).map)


def test_pixels_stay_in_range_and_runs_are_seeded() -> None:
    model = biased_tiny_cnn()
    pixel = maximize(model, gray(), 0, parameterization="pixel", steps=3, lr=5.0)
    values = Preprocessing().denormalize(pixel.map)
    assert values.min() >= -1e-6 and values.max() <= 1 + 1e-6
    assert values.max() > 0.99 and values.min() < 0.01  # the big steps did hit both edges
    runs = [maximize(model, gray(), 0, steps=2, seed=s).map for s in (3, 3, 4)]
    torch.testing.assert_close(runs[0], runs[1])
    assert not torch.allclose(runs[0], runs[2])


def test_fourier_image_starts_gray_and_favours_low_frequencies() -> None:
    shape = (1, 3, 32, 32)
    zero = FourierImage(shape, torch.zeros(FourierImage.spectrum_shape(1, 32, 32)))
    torch.testing.assert_close(zero.pixels(), torch.full(shape, 0.5))
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(FourierImage.spectrum_shape(1, 32, 32), generator=generator)
    image = FourierImage(shape, noise).pixels().detach()
    white = torch.randn(shape, generator=generator)
    # 1/f amplitudes: the upper half of the frequencies carries far less power than in noise.
    assert high_to_low_power(image) < 0.2 * high_to_low_power(white)


def high_to_low_power(image: torch.Tensor) -> float:
    """Mean spectral power above 1/4 cycle per pixel over that below it (white noise: ~1)."""
    power = torch.fft.fft2(image - image.mean(dim=(-2, -1), keepdim=True)).abs().pow(2)
    rows = torch.fft.fftfreq(image.shape[-2]).view(-1, 1)
    cols = torch.fft.fftfreq(image.shape[-1]).view(1, -1)
    radius = (rows**2 + cols**2).sqrt().expand_as(power)
    high, low = power[radius > 0.25].mean(), power[(radius > 0) & (radius <= 0.25)].mean()
    return float(high / low)


def test_gaussian_blur_matches_scipy() -> None:
    from scipy.ndimage import gaussian_filter

    image = torch.rand(1, 2, 9, 11, generator=torch.Generator().manual_seed(1))
    ours = gaussian_blur(image, 1.0)[0].numpy()
    # torch's "reflect" padding mirrors about the edge pixel, which scipy calls "mirror".
    reference = [gaussian_filter(c, 1.0, mode="mirror", truncate=3.0) for c in image[0].numpy()]
    np.testing.assert_allclose(ours, np.stack(reference), atol=1e-6)


class LiveGraphProbe(nn.Module):
    """Identity whose autograd node counts how many forward graphs are still alive."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self.forwards = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.forwards += 1
        return _Counted.apply(x, self)


class _Counted(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, probe: LiveGraphProbe) -> torch.Tensor:
        probe.live += 1
        probe.peak = max(probe.peak, probe.live)
        weakref.finalize(ctx, _release, probe)
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


def _release(probe: LiveGraphProbe) -> None:
    probe.live -= 1


@pytest.mark.parametrize("parameterization", ["pixel", "fourier"])
def test_memory_is_bounded_by_the_batch_not_the_steps(parameterization: str) -> None:
    probe = LiveGraphProbe()
    maximize(biased_tiny_cnn(probe), gray(), 0, steps=25, parameterization=parameterization)
    assert probe.forwards >= 25
    assert probe.peak <= 2  # at most the current step's graph and the one being freed
    assert probe.live == 0


def high_frequency_share(image: torch.Tensor) -> float:
    """Share of a centred image's energy that a sigma-2 Gaussian blur removes (white: ~0.94)."""
    centred = image - image.mean()
    detail = centred - gaussian_blur(centred, 2.0)
    return float(detail.pow(2).sum() / centred.pow(2).sum())


def total_variation(image: torch.Tensor) -> float:
    """Mean absolute neighbour difference, relative to the image's spread."""
    rows = (image[..., 1:, :] - image[..., :-1, :]).abs().mean()
    cols = (image[..., :, 1:] - image[..., :, :-1]).abs().mean()
    return float((rows + cols) / image.std())


@pytest.fixture(scope="module")
def bell_pepper_image(default_model: LoadedModel, chelsea_batch: torch.Tensor) -> MethodOutput:
    return maximize(default_model, chelsea_batch, "bell pepper")  # the defaults


def test_default_params_draw_a_bell_pepper(
    default_model: LoadedModel, bell_pepper_image: MethodOutput
) -> None:
    extras = bell_pepper_image.extras
    assert extras["top1_class"].tolist() == [BELL_PEPPER]
    assert extras["probability"].item() >= 0.5
    with torch.no_grad():  # the returned image itself reproduces the reported numbers
        logits = default_model.module(bell_pepper_image.map)
    assert logits.argmax(dim=1).tolist() == [BELL_PEPPER]
    assert logits[0, BELL_PEPPER].item() == pytest.approx(extras["logit"].item(), abs=1e-3)
    assert logits.softmax(dim=1)[0, BELL_PEPPER].item() >= 0.5
    pixels = default_model.preprocessing.denormalize(bell_pepper_image.map)
    assert pixels.min() >= -1e-6 and pixels.max() <= 1 + 1e-6
    assert count_hooks(default_model.module) == 0
    assert all(p.grad is None and not p.requires_grad for p in default_model.module.parameters())


def test_the_bell_pepper_is_not_high_frequency_noise(
    default_model: LoadedModel, bell_pepper_image: MethodOutput
) -> None:
    pixels = default_model.preprocessing.denormalize(bell_pepper_image.map)
    white = torch.rand(pixels.shape, generator=torch.Generator().manual_seed(0))
    assert pixels.std() > 0.03  # a picture, not a flat gray
    assert high_frequency_share(pixels) < 0.3 * high_frequency_share(white)
    assert total_variation(pixels) < 0.3 * total_variation(white)


def test_a_channel_of_a_real_layer_grows(
    default_model: LoadedModel, chelsea_batch: torch.Tensor
) -> None:
    layer, channel = "blocks.2", 7
    x = chelsea_batch.clone()
    result = run_methods(
        default_model, x, [("activation_max", {"steps": 8, "channel": channel})], layer=layer
    )
    start = default_model.preprocessing.normalize(torch.full_like(x, 0.5))
    baseline = run_methods(default_model, start, [("feature_maps", {})], layer=layer)
    start_activation = baseline.outputs["feature_maps"].extras["channel_means"][0, channel]
    assert result.outputs["activation_max"].extras["score"].item() > start_activation.item() + 0.5
    assert torch.equal(x, chelsea_batch)
    assert count_hooks(default_model.module) == 0
