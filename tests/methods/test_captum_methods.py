"""The Captum-backed methods: each equals Captum's own call on seeded torchvision VGG and ResNet,
is reproducible from its seed, converges to the expectation it estimates, keeps DeepLIFT's
summation to delta, and is refused where its rule cannot reach the model's nonlinearities."""

from __future__ import annotations

from typing import Any

import captum.attr as captum
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlens.errors import IncompatibleModelError, InvalidParamsError
from cnnlens.methods import attribute, run_methods
from cnnlens.methods._superpixels import SuperpixelParams, superpixel_mask
from cnnlens.methods.base import MethodContext
from cnnlens.methods.run import inventory_of
from cnnlens.models import LoadedModel, count_hooks
from cnnlens.targets import ClassTarget
from tests import tiny
from tests.conftest import EGYPTIAN_CAT
from tests.methods.counting import counting
from tests.methods.families import (
    PREPROCESSING,
    TARGETS,
    assert_equal_maps,
    black,
    photos,
    seeded,
    white,
)


@pytest.fixture(scope="module")
def vgg() -> nn.Module:
    model = seeded("vgg11")
    with torch.no_grad():  # random VGG logits barely move; LIME's Lasso would zero them all
        model.classifier[-1].weight.mul_(100)
    return model


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    return seeded("resnet18")


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return photos()


@pytest.fixture(params=["vgg", "resnet"])
def model(request: pytest.FixtureRequest) -> nn.Module:
    return request.getfixturevalue(request.param)  # type: ignore[no-any-return]


def _seeded_call(seed: int, call: Any) -> torch.Tensor:
    """Captum's call with torch's and NumPy's global generators seeded as cnnlens seeds them."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        np.random.seed(seed)
        return call()  # type: ignore[no-any-return]


# --- DeepLIFT and DeepLIFT SHAP ----------------------------------------------------------


@pytest.mark.parametrize("baseline", ["black", "white"])
def test_deeplift_equals_captums_deeplift(vgg: nn.Module, x: torch.Tensor, baseline: str) -> None:
    ours = attribute("deeplift", vgg, x, target=TARGETS, baseline=baseline)
    reference = black(x) if baseline == "black" else white(x)
    theirs = captum.DeepLift(vgg).attribute(x, baselines=reference, target=TARGETS)
    assert_equal_maps(ours, theirs)
    assert count_hooks(vgg) == 0
    assert not any({"input", "output"} & set(vars(module)) for module in vgg.modules())


def test_deeplift_rescales_relu6_where_captum_alone_would_not(
    default_model: LoadedModel, chelsea_batch: torch.Tensor
) -> None:
    """Shrikumar et al.'s summation to delta, sum_i C_i = S(x) - S(x'), on efficientnet_lite0
    (no max pooling, whose multipliers in Captum are not conservative): its ReLU6 modules get
    the Rescale multiplier. Captum's table lacks ReLU6 and treats it as linear: its sum misses."""
    ours = attribute("deeplift", default_model, chelsea_batch, target=EGYPTIAN_CAT)
    module = default_model.module
    reference = default_model.preprocessing.normalize(torch.zeros_like(chelsea_batch))
    with torch.no_grad():
        delta = float(module(chelsea_batch)[0, EGYPTIAN_CAT] - module(reference)[0, EGYPTIAN_CAT])
    assert float(ours.sum()) == pytest.approx(delta, rel=1e-3)
    plain = captum.DeepLift(module).attribute(
        chelsea_batch, baselines=reference, target=EGYPTIAN_CAT
    )
    assert abs(float(plain.detach().sum()) - delta) > 100 * abs(float(ours.sum()) - delta)
    assert count_hooks(module) == 0


def test_deeplift_shap_equals_captums_deeplift_shap(vgg: nn.Module, x: torch.Tensor) -> None:
    names = ["black", "white", "zero"]
    ours = attribute("deeplift_shap", vgg, x, target=TARGETS, baselines=names)
    references = torch.cat([black(x)[:1], white(x)[:1], torch.zeros_like(x[:1])])
    theirs = captum.DeepLiftShap(vgg).attribute(x, baselines=references, target=TARGETS)
    assert_equal_maps(ours, theirs)


def test_deeplift_shap_with_each_images_mean_colour(vgg: nn.Module, x: torch.Tensor) -> None:
    """A baseline that differs per image: each image against its own reference set."""
    ours = attribute("deeplift_shap", vgg, x, target=TARGETS, baselines=["black", "mean"])
    means = x.mean(dim=(2, 3), keepdim=True).expand_as(x)
    for row in range(2):
        references = torch.cat([black(x)[:1], means[row : row + 1]])
        theirs = captum.DeepLiftShap(vgg).attribute(
            x[row : row + 1], baselines=references, target=TARGETS[row]
        )
        assert_equal_maps(ours[row : row + 1], theirs)


def _functional_relu_net() -> nn.Module:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.fc = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(F.relu(self.conv(x)).mean(dim=(2, 3)))

    torch.manual_seed(0)
    return Net().eval()


def _gated_net() -> nn.Module:
    class Gate(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.relu = nn.ReLU()
            self.gate = nn.Sigmoid()
            self.fc = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            features = self.relu(self.conv(x))
            return self.fc((features * self.gate(features)).mean(dim=(2, 3)))

    torch.manual_seed(0)
    return Gate().eval()


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: seeded("resnet18"), "run more than once"),
        (_functional_relu_net, "functional"),
        (_gated_net, "multiplies activations"),
    ],
    ids=["reused ReLU modules", "functional ReLU", "gates"],
)
@pytest.mark.parametrize("method", ["deeplift", "deeplift_shap"])
def test_deeplift_is_refused_before_any_work(make: Any, reason: str, method: str) -> None:
    model = make()
    x = torch.randn(1, 3, 32, 32)
    inventory_of(model, (32, 32))  # the model's one-off layer trace
    with counting(model) as passes, pytest.raises(IncompatibleModelError, match=reason):
        run_methods(model, x, [(method, {})], target=1)
    assert passes.forwards == 0
    assert count_hooks(model) == 0


def test_deeplift_shap_needs_two_baselines(vgg: nn.Module, x: torch.Tensor) -> None:
    with pytest.raises(InvalidParamsError, match="baselines"):
        attribute("deeplift_shap", vgg, x, target=TARGETS, baselines=["black"])


# --- GradientSHAP and input x gradient ----------------------------------------------------


def test_gradient_shap_equals_captum_for_the_same_seed(model: nn.Module, x: torch.Tensor) -> None:
    params = {"n_samples": 4, "stdevs": 0.1}
    ours = attribute("gradient_shap", model, x, target=TARGETS, seed=5, **params)
    references = torch.cat([black(x)[:1], white(x)[:1]])

    def theirs() -> torch.Tensor:
        explainer = captum.GradientShap(model)
        return explainer.attribute(x, baselines=references, target=TARGETS, **params)  # type: ignore[no-any-return]

    assert_equal_maps(ours, _seeded_call(5, theirs))
    assert torch.equal(ours, attribute("gradient_shap", model, x, target=TARGETS, seed=5, **params))
    other = attribute("gradient_shap", model, x, target=TARGETS, seed=6, **params)
    assert not torch.allclose(ours, other)


def test_gradient_shap_converges_to_its_expectation() -> None:
    """On a linear model the gradient is constant, so the expectation over the reference set
    R = {black, white} is (x - mean(R)) * grad: the estimate's error falls as 1/sqrt(n), and
    Captum's own estimate tends to the same value."""
    model = tiny.tiny_cnn(activation=nn.Identity())
    x = tiny.tiny_input()
    gradient = torch.tensor(tiny.FC[1] @ tiny.CONV / 4, dtype=torch.float32).view(1, 3, 1, 1)
    expected = (x - (black(x) + white(x)) / 2) * gradient
    # Each sample draws black or white: the estimate's std is |(white - black) g| / (2 sqrt(n)).
    spread = float(((white(x) - black(x)) * gradient).abs().max()) / 2

    def error(n: int) -> float:
        found = attribute("gradient_shap", model, x, target=1, n_samples=n, seed=1)
        return float((found - expected).abs().max())

    assert error(1000) < 0.5 * error(10)
    assert error(1000) < 4 * spread / 1000**0.5
    references = torch.cat([black(x), white(x)])
    theirs = _seeded_call(
        2,
        lambda: captum.GradientShap(model).attribute(x, references, n_samples=4000, target=1),
    )
    assert float((theirs - expected).abs().max()) < 4 * spread / 4000**0.5


def test_input_x_gradient_equals_captum(model: nn.Module, x: torch.Tensor) -> None:
    ours = attribute("input_x_gradient", model, x, target=TARGETS)
    assert_equal_maps(ours, captum.InputXGradient(model).attribute(x, target=TARGETS))


# --- LIME, Kernel SHAP and feature ablation over superpixels ---------------------------------


def _mask(model: nn.Module, x: torch.Tensor, **params: Any) -> torch.Tensor:
    context = MethodContext(
        model,
        x,
        ClassTarget(torch.tensor(TARGETS), "softmax"),
        "",
        PREPROCESSING,
        inventory_of(model, x.shape[-2:]),
    )
    mask, _ = superpixel_mask(context, SuperpixelParams(**params))
    return mask


@pytest.mark.parametrize(
    ("method", "explainer", "sampled"),
    [
        ("lime", captum.Lime, True),
        ("kernel_shap", captum.KernelShap, True),
        ("feature_ablation", captum.FeatureAblation, False),
    ],
)
def test_superpixel_methods_equal_captum(
    model: nn.Module, x: torch.Tensor, method: str, explainer: Any, sampled: bool
) -> None:
    params: dict[str, Any] = {"segments": 12, "batch_size": 8}
    sampling = {"n_samples": 24} if sampled else {}
    ours = (
        attribute(method, model, x, target=TARGETS, seed=3, **params, **sampling)
        if sampled
        else (attribute(method, model, x, target=TARGETS, **params))
    )
    mask = _mask(model, x, segments=12)
    assert int(mask.max()) >= 5  # SLIC found segments in both photos

    def theirs() -> torch.Tensor:
        return torch.cat(
            [
                explainer(model).attribute(
                    x[b : b + 1],
                    baselines=black(x)[b : b + 1],
                    target=TARGETS[b],
                    feature_mask=mask[b : b + 1],
                    perturbations_per_eval=8,
                    **sampling,
                )
                for b in range(2)
            ]
        )

    expected = _seeded_call(3, theirs) if sampled else theirs()
    assert ours.shape == (2, 1, *x.shape[-2:])
    assert_equal_maps(ours, expected[:, :1])


def test_lime_is_seeded_and_converges_to_captums_estimate() -> None:
    """One feature per pixel of the tiny CNN (a 2 x 2 grid): the same seed gives the same
    coefficients; with more samples they approach Captum's own estimate from another seed."""
    model = tiny.tiny_cnn()
    x = tiny.tiny_input()
    params = {"superpixels": "grid", "segments": 4}
    first = attribute("lime", model, x, target=0, n_samples=30, seed=4, **params)
    assert torch.equal(first, attribute("lime", model, x, target=0, n_samples=30, seed=4, **params))
    assert not torch.equal(
        first, attribute("lime", model, x, target=0, n_samples=30, seed=5, **params)
    )
    mask = torch.arange(4).view(1, 1, 2, 2)
    limit = _seeded_call(
        9,
        lambda: captum.Lime(model).attribute(
            x, baselines=black(x), target=0, feature_mask=mask, n_samples=4000
        ),
    )[:, :1]

    def distance(n: int) -> float:
        found = attribute("lime", model, x, target=0, n_samples=n, seed=1, **params)
        return float((found - limit).abs().max())

    assert distance(1000) < 0.5 * distance(12)
    assert distance(1000) < 0.05 * float(limit.abs().max())


def test_feature_ablation_by_hand_on_a_linear_model() -> None:
    """A_p = S(x) - S(x with pixel p set to black) = sum_c g_c (x_cp - black_cp)."""
    model = tiny.tiny_cnn(activation=nn.Identity())
    x = tiny.tiny_input()
    ours = attribute("feature_ablation", model, x, target=1, superpixels="grid", segments=4)
    gradient = torch.tensor(tiny.FC[1] @ tiny.CONV / 4, dtype=torch.float32).view(1, 3, 1, 1)
    expected = ((x - black(x)) * gradient).sum(dim=1, keepdim=True)
    torch.testing.assert_close(ours, expected)


def test_superpixels_follow_the_photo_and_noise_gets_the_grid(
    vgg: nn.Module, x: torch.Tensor
) -> None:
    result = run_methods(vgg, x, [("feature_ablation", {"segments": 12})], target=TARGETS)
    extras = result.outputs["feature_ablation"].extras
    assert extras["superpixels"] == ["slic", "slic"]
    assert all(6 <= count <= 18 for count in extras["features"])
    noise = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    result = run_methods(vgg, noise, [("feature_ablation", {"segments": 12})], target=1)
    assert result.outputs["feature_ablation"].extras["superpixels"] == ["grid"]
    assert result.outputs["feature_ablation"].extras["features"] == [12]


# --- SmoothGrad's VarGrad -----------------------------------------------------------------


def test_vargrad_of_a_linear_model_is_zero() -> None:
    model = tiny.tiny_cnn(activation=nn.Identity())
    ours = attribute("smoothgrad", model, tiny.tiny_input(), target=0, samples=5, variant="vargrad")
    torch.testing.assert_close(ours, torch.zeros_like(ours), rtol=0, atol=1e-6)


def test_vargrad_is_the_variance_of_the_seeded_noisy_gradients() -> None:
    """V = mean_s g_s^2 - (mean_s g_s)^2 over the same noise draws as SmoothGrad's."""
    model = tiny.tiny_cnn()
    x = tiny.tiny_input()
    samples, level = 6, 0.5
    ours = attribute(
        "smoothgrad", model, x, target=1, samples=samples, noise_level=level, reduce="none",
        variant="vargrad", batch_size=4,
    )  # fmt: skip
    sigma = level * float(x.max() - x.min())
    generator = torch.Generator().manual_seed(0)
    gradients = []
    for _ in range(samples):
        point = (x + sigma * torch.randn(x.shape, generator=generator)).requires_grad_(True)
        (gradient,) = torch.autograd.grad(model(point)[0, 1], point)
        gradients.append(gradient)
    stacked = torch.stack(gradients)
    expected = stacked.square().mean(dim=0) - stacked.mean(dim=0).square()
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-7)


def test_vargrad_agrees_with_captums_noise_tunnel_in_expectation() -> None:
    model = tiny.tiny_cnn()
    x = tiny.tiny_input()
    level, samples = 0.3, 1000
    ours = attribute(
        "smoothgrad", model, x, target=0, samples=samples, noise_level=level, reduce="none",
        variant="vargrad", batch_size=500,
    )  # fmt: skip
    sigma = level * float(x.max() - x.min())
    theirs = _seeded_call(
        1,
        lambda: captum.NoiseTunnel(captum.Saliency(model)).attribute(
            x, nt_type="vargrad", nt_samples=4 * samples, stdevs=sigma, target=0, abs=False
        ),
    )
    torch.testing.assert_close(ours, theirs, rtol=0.1, atol=0.05 * float(theirs.abs().max()))


def test_vargrad_refuses_squared() -> None:
    with pytest.raises(InvalidParamsError, match="squared"):
        attribute("smoothgrad", tiny.tiny_cnn(), tiny.tiny_input(), variant="vargrad", squared=True)
