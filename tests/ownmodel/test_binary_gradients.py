"""A binary head (one logit z): gradient methods explain z for "positive", -z for "negative"."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import cnnlens
from tests.ownmodel.conftest import small_cnn


def _binary_model() -> nn.Module:
    return small_cnn(outputs=1, seed=3).eval()


def _r(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(np.corrcoef(a.detach().flatten().numpy(), b.detach().flatten().numpy())[0, 1])


class _Signed(nn.Module):
    """captum's forward: the binary score as a (B, 2) tensor (-z, z)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.model(x)
        return torch.cat([-z, z], dim=1)


@pytest.mark.parametrize("label, index", [("positive", 1), ("negative", 0)])
def test_binary_scores_match_captum(label: str, index: int) -> None:
    from captum.attr import IntegratedGradients, LayerGradCam, Saliency

    module = _binary_model()
    loaded = cnnlens.wrap(module, head="binary", preprocessing={"input_size": 24})
    assert tuple(loaded.categories) == ("negative", "positive")
    x = torch.randn(2, 3, 24, 24, generator=torch.Generator().manual_seed(1))
    signed = _Signed(module)

    ours = cnnlens.attribute("saliency", loaded, x, target=label)
    theirs = Saliency(signed).attribute(x.clone().requires_grad_(), target=index, abs=True)
    torch.testing.assert_close(ours, theirs.amax(dim=1, keepdim=True), rtol=1e-4, atol=1e-7)

    ours = cnnlens.attribute(
        "integrated_gradients", loaded, x, target=label, steps=16, baseline="zero"
    )
    theirs = IntegratedGradients(signed).attribute(x, target=index, n_steps=16)
    assert _r(ours, theirs) >= 0.99

    ours = cnnlens.attribute("smoothgrad", loaded, x, target=label, samples=4)
    assert ours.abs().sum() > 0

    cam = LayerGradCam(signed, signed.model[3]).attribute(x, target=index, relu_attributions=True)
    ours = cnnlens.attribute("grad_cam", loaded, x, target=label, layer=module[3])
    assert float(cam.detach().sum()) > 0 and _r(ours, cam) >= 0.99


def test_binary_gradients_flip_sign_and_default_target_is_the_prediction() -> None:
    module = _binary_model()
    loaded = cnnlens.wrap(module, head="binary", preprocessing={"input_size": 24})
    x = torch.randn(1, 3, 24, 24, generator=torch.Generator().manual_seed(2))
    positive = cnnlens.attribute("integrated_gradients", loaded, x, target="positive", steps=8)
    negative = cnnlens.attribute("integrated_gradients", loaded, x, target=0, steps=8)
    torch.testing.assert_close(negative, -positive)
    result = cnnlens.run_methods(loaded, x, [("saliency", None)])
    with torch.no_grad():
        assert int(result.targets[0]) == int(float(module(x)[0, 0]) > 0)
