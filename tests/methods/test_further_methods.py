"""Integrated gradients, SmoothGrad, Grad-CAM++ and Score-CAM: by hand, by axiom, by reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cnnlens.errors import InvalidParamsError
from cnnlens.methods import attribute, run_methods
from cnnlens.models import LoadedModel, count_hooks
from tests import tiny
from tests.conftest import EGYPTIAN_CAT, ESPRESSO, pearson


def linear_model() -> nn.Module:
    """The tiny CNN without its ReLU: S = FC mean_p(CONV x(p)) + b is linear in x."""
    return tiny.tiny_cnn(activation=nn.Identity())


def linear_gradient(target: int) -> torch.Tensor:
    """dS_t/dx_c(p) = sum_k FC[t, k] CONV[k, c] / P at every pixel: (1, 3, 2, 2)."""
    per_channel = torch.tensor(tiny.FC[target] @ tiny.CONV / 4, dtype=torch.float32)
    return per_channel.view(1, 3, 1, 1).expand(1, 3, 2, 2)


def test_integrated_gradients_of_a_linear_model_is_input_times_weight() -> None:
    model = linear_model()
    x = tiny.tiny_input()
    ours = attribute("integrated_gradients", model, x, target=1, steps=4, baseline="zero")
    expected = x * linear_gradient(1)
    torch.testing.assert_close(ours, expected)


@pytest.mark.parametrize("rule", ["gausslegendre", "riemann_trapezoid"])
def test_integrated_gradients_is_complete_on_the_tiny_cnn(rule: str) -> None:
    """Sundararajan et al.'s completeness axiom: the attributions sum to S(x) - S(baseline)."""
    model = tiny.tiny_cnn()
    x = tiny.tiny_input()
    ours = attribute(
        "integrated_gradients", model, x, target=0, steps=256, rule=rule, baseline="zero"
    )
    with torch.no_grad():
        difference = model(x)[0, 0] - model(torch.zeros_like(x))[0, 0]
    assert float(ours.sum()) == pytest.approx(float(difference), rel=2e-2)


def test_integrated_gradients_matches_captum(
    default_model: LoadedModel, chelsea_batch: torch.Tensor
) -> None:
    from captum.attr import IntegratedGradients

    ours = attribute(
        "integrated_gradients",
        default_model,
        chelsea_batch,
        target=EGYPTIAN_CAT,
        steps=8,
        baseline="zero",
        rule="gausslegendre",
    )
    # Gauss-Legendre, captum's default. (captum's trapezoid weights sum to (n-1)/n, not 1.)
    theirs = IntegratedGradients(default_model.module).attribute(
        chelsea_batch, target=EGYPTIAN_CAT, n_steps=8, method="gausslegendre"
    )
    assert pearson(ours, theirs) >= 0.98
    # Value for value up to float32 reduction order, which follows the thread count: a tolerance
    # relative to the map's scale (absolute 1e-5 failed by 5e-5 on a loaded 2-core machine).
    scale = float(theirs.abs().max())
    torch.testing.assert_close(ours, theirs, rtol=1e-3, atol=1e-3 * scale)
    assert count_hooks(default_model.module) == 0


def test_smoothgrad_of_a_linear_model_is_the_weight_for_any_noise() -> None:
    model = linear_model()
    x = tiny.tiny_input()
    ours = attribute("smoothgrad", model, x, target=0, samples=5, noise_level=0.5, reduce="none")
    torch.testing.assert_close(ours, linear_gradient(0))


def test_smoothgrad_tends_to_saliency_as_the_noise_vanishes(
    default_model: LoadedModel, coffee_batch: torch.Tensor
) -> None:
    saliency = attribute("saliency", default_model, coffee_batch, target=ESPRESSO)
    smooth = attribute(
        "smoothgrad", default_model, coffee_batch, target=ESPRESSO, samples=2, noise_level=1e-6
    )
    assert pearson(smooth, saliency) >= 0.999


def test_smoothgrad_is_seeded_and_averages_the_tiny_cnn_gradients() -> None:
    """With the noise drawn as the method draws it, the mean of the hand-written gradients."""
    model = tiny.tiny_cnn()
    x = tiny.tiny_input()
    ours = attribute("smoothgrad", model, x, target=1, samples=64, reduce="none", seed=3)
    again = attribute("smoothgrad", model, x, target=1, samples=64, reduce="none", seed=3)
    torch.testing.assert_close(ours, again)
    sigma = 0.15 * float(x.max() - x.min())
    generator = torch.Generator().manual_seed(3)
    expected = np.zeros((3, 2, 2))
    for _ in range(64):
        noisy = x + sigma * torch.randn(x.shape, generator=generator)
        a = np.einsum("kc,chw->khw", tiny.CONV, noisy[0].numpy())
        expected += np.einsum("khw,kc->chw", (tiny.FC[1] / 4)[:, None, None] * (a > 0), tiny.CONV)
    np.testing.assert_allclose(ours[0].numpy(), expected / 64, rtol=1e-5, atol=1e-6)


def test_grad_cam_pp_matches_pytorch_grad_cam(
    default_model: LoadedModel, chelsea_batch: torch.Tensor
) -> None:
    from pytorch_grad_cam import GradCAMPlusPlus
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    ours = attribute("grad_cam_pp", default_model, chelsea_batch, target=EGYPTIAN_CAT)
    with GradCAMPlusPlus(default_model.module, target_layers=[default_model.module.bn2]) as ref:
        theirs = ref(
            chelsea_batch.clone().requires_grad_(True),
            targets=[ClassifierOutputTarget(EGYPTIAN_CAT)],
        )
    assert pearson(ours, theirs) >= 0.98


def test_grad_cam_pp_on_the_tiny_cnn_by_hand() -> None:
    """Linear head after GAP: g = FC[t,k]/P everywhere, so a = 1 / (2 + sum(A^k) g) per channel."""
    model = tiny.tiny_cnn()
    ours = attribute("grad_cam_pp", model, tiny.tiny_input(), target=0, layer="relu")
    activations = np.maximum(tiny.pre_activations(), 0)  # (K, H, W)
    g = tiny.FC[0] / 4
    alpha = g**2 / (2 * g**2 + activations.sum(axis=(1, 2)) * g**3 + 1e-6)
    weights = np.where(g != 0, alpha, 0) * np.maximum(g, 0) * 4
    expected = np.maximum(np.einsum("k,khw->hw", weights, activations), 0)
    np.testing.assert_allclose(ours[0, 0].numpy(), expected, rtol=1e-5, atol=1e-7)


def test_score_cam_matches_pytorch_grad_cam(
    default_model: LoadedModel, coffee_batch: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pytorch-grad-cam upsamples the masks with align_corners=True (r = 0.977 with ours); the
    official Score-CAM code, like cnnlens, uses align_corners=False: the reference is set so."""
    import pytorch_grad_cam.score_cam
    from pytorch_grad_cam import ScoreCAM

    def upsample(size: tuple[int, int]) -> nn.Module:
        return nn.Upsample(size=size, mode="bilinear", align_corners=False)

    monkeypatch.setattr(pytorch_grad_cam.score_cam.torch.nn, "UpsamplingBilinear2d", upsample)
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    x = coffee_batch
    layer = "blocks.2"  # 40 channels at stride 8: 40 masked forwards each
    ours = attribute(
        "score_cam",
        default_model.module,
        x,
        target=ESPRESSO,
        layer=layer,
        weighting="channel_softmax",
        batch_size=64,
    )
    module = default_model.module.get_submodule(layer)
    with ScoreCAM(default_model.module, target_layers=[module]) as reference:
        reference.batch_size = 64
        theirs = reference(x.clone(), targets=[ClassifierOutputTarget(ESPRESSO)])
    assert pearson(ours, theirs) >= 0.98


def test_score_cam_on_the_tiny_cnn_by_hand() -> None:
    """Each channel's min-max mask times the input, scored by the target's probability."""
    model = tiny.tiny_cnn()
    x = tiny.tiny_input()
    ours = run_methods(model, x, [("score_cam", {})], target=0, layer="relu")
    weights = ours.outputs["score_cam"].extras["channel_weights"][0]
    activations = np.maximum(tiny.pre_activations(), 0)
    for k in range(2):
        mask = activations[k]
        mask = (mask - mask.min()) / (mask.max() - mask.min() + 1e-8)
        with torch.no_grad():
            probability = model(x * torch.tensor(mask, dtype=torch.float32)).softmax(1)[0, 0]
        assert float(weights[k]) == pytest.approx(float(probability), rel=1e-5)
    expected = np.maximum(np.einsum("k,khw->hw", weights.numpy(), activations), 0)
    np.testing.assert_allclose(ours.outputs["score_cam"].map[0, 0].numpy(), expected, rtol=1e-5)


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("integrated_gradients", {"steps": 0}),
        ("integrated_gradients", {"baseline": "blurred"}),
        ("smoothgrad", {"noise_level": 0}),
        ("smoothgrad", {"samples": float("nan")}),
        ("score_cam", {"batch_size": 0}),
    ],
)
def test_bad_params_are_clear_errors(method: str, params: dict[str, object]) -> None:
    with pytest.raises(InvalidParamsError, match=method):
        attribute(method, tiny.tiny_cnn(), tiny.tiny_input(), target=0, **params)


def test_score_cam_can_score_only_the_most_active_channels() -> None:
    model = tiny.tiny_cnn()
    x = tiny.tiny_input()
    full = run_methods(model, x, [("score_cam", {})], target=0, layer="relu")
    top = run_methods(model, x, [("score_cam", {"channels": 1})], target=0, layer="relu")
    most_active = int(np.maximum(tiny.pre_activations(), 0).mean(axis=(1, 2)).argmax())
    full_weights = full.outputs["score_cam"].extras["channel_weights"][0]
    top_weights = top.outputs["score_cam"].extras["channel_weights"][0]
    assert float(top_weights[1 - most_active]) == 0.0
    assert float(top_weights[most_active]) == pytest.approx(float(full_weights[most_active]))
