"""LRP through Zennit: equal to Zennit's attributor with the same composite and canonizers on
seeded torchvision VGG (with batch norms) and ResNet, conservative, the model left exactly as
it was, and refused where no rule covers a layer."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn
from zennit.attribution import Gradient
from zennit.canonizers import SequentialMergeBatchNorm
from zennit.composites import (
    EpsilonAlpha2Beta1,
    EpsilonAlpha2Beta1Flat,
    EpsilonGammaBox,
    EpsilonPlus,
    EpsilonPlusFlat,
)
from zennit.torchvision import ResNetCanonizer, VGGCanonizer

from cnnlens.errors import IncompatibleModelError
from cnnlens.methods import attribute, run_methods
from cnnlens.methods.run import inventory_of
from cnnlens.models import LoadedModel, count_hooks
from tests.methods.counting import counting
from tests.methods.families import TARGETS, assert_equal_maps, black, photos, seeded, white

COMPOSITES: dict[str, Any] = {
    "epsilon_plus_flat": EpsilonPlusFlat,
    "epsilon_gamma_box": EpsilonGammaBox,
    "epsilon_alpha2_beta1_flat": EpsilonAlpha2Beta1Flat,
    "epsilon_plus": EpsilonPlus,
    "epsilon_alpha2_beta1": EpsilonAlpha2Beta1,
}
MODELS = {"vgg11_bn": VGGCanonizer, "resnet18": ResNetCanonizer}


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return photos()


def zennit_lrp(
    model: nn.Module, canonizer: Any, name: str, x: torch.Tensor, **options: Any
) -> torch.Tensor:
    """Zennit's own attributor: the composite, the canonizer, the target's logit as the output
    relevance (its one-hot times the output)."""
    if name == "epsilon_gamma_box":
        options = {"low": black(x), "high": white(x), **options}
    composite = COMPOSITES[name](canonizers=[canonizer()], **options)
    one_hot = torch.eye(10)[TARGETS]
    with Gradient(model, composite) as attributor:
        _, relevance = attributor(x.clone(), lambda output: one_hot * output)
    return relevance  # type: ignore[no-any-return]


def fingerprint(model: nn.Module) -> list[tuple[str, int, torch.Tensor]]:
    """Every tensor of the state dict with the storage it lives in."""
    return [
        (name, tensor.untyped_storage().data_ptr(), tensor.clone())
        for name, tensor in model.state_dict(keep_vars=True).items()
    ]


# Every composite on ResNet; on VGG (whose dense layers dominate the time) the first-layer
# rules that differ: flat and z-box, and the alpha-beta rule.
CASES = [("resnet18", name) for name in COMPOSITES] + [
    ("vgg11_bn", name)
    for name in ("epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1_flat")
]


@pytest.fixture(scope="module")
def models() -> dict[str, nn.Module]:
    return {name: seeded(name) for name in MODELS}


@pytest.mark.parametrize(("architecture", "composite"), CASES)
def test_lrp_equals_zennits_attributor(
    models: dict[str, nn.Module], x: torch.Tensor, architecture: str, composite: str
) -> None:
    network, canonizer = models[architecture], MODELS[architecture]
    before = fingerprint(network)
    ours = attribute("lrp", network, x, target=TARGETS, composite=composite)
    assert_equal_maps(ours, zennit_lrp(network, canonizer, composite, x))
    after = fingerprint(network)
    assert [(name, pointer) for name, pointer, _ in after] == [(n, p) for n, p, _ in before]
    assert all(torch.equal(a, b) for (_, _, a), (_, _, b) in zip(after, before, strict=True))
    assert count_hooks(network) == 0
    assert not any("canonizer_sum" in dict(m.named_children()) for m in network.modules())
    assert not any("forward" in vars(m) for m in network.modules())
    assert all(p.grad is None and p.requires_grad for p in network.parameters())


def test_lrp_is_conservative_with_the_epsilon_rule() -> None:
    """A bias-free ReLU net with the epsilon rule everywhere: sum_i R_i = S(x)."""
    torch.manual_seed(0)
    network = nn.Sequential(
        nn.Conv2d(3, 6, 3, bias=False), nn.ReLU(), nn.Conv2d(6, 6, 3, bias=False), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 4, bias=False),
    ).eval()  # fmt: skip
    x = torch.rand(2, 3, 12, 12)
    relevance = attribute("lrp", network, x, target=[1, 2], composite="epsilon_plus")
    with torch.no_grad():
        scores = network(x)[torch.arange(2), torch.tensor([1, 2])]
    positive = scores > 0  # z+ keeps positive evidence only
    torch.testing.assert_close(
        relevance.sum(dim=(1, 2, 3))[positive], scores[positive], rtol=1e-3, atol=1e-6
    )


def test_box_bounds_default_to_the_models_normalized_range(
    models: dict[str, nn.Module], x: torch.Tensor
) -> None:
    network, canonizer = models["resnet18"], ResNetCanonizer
    default = attribute("lrp", network, x, target=TARGETS, composite="epsilon_gamma_box")
    wider = attribute(
        "lrp", network, x, target=TARGETS, composite="epsilon_gamma_box", low=-3.0, high=3.0
    )
    expected = zennit_lrp(
        network, canonizer, "epsilon_gamma_box", x, low=torch.full_like(x, -3.0),
        high=torch.full_like(x, 3.0),
    )  # fmt: skip
    assert_equal_maps(wider, expected)
    assert not torch.allclose(default, wider)


def test_canonizers_follow_the_architecture() -> None:
    from cnnlens.methods._zennit import canonizers

    for name, expected in (
        ("vgg11_bn", VGGCanonizer),
        ("resnet18", ResNetCanonizer),
        ("mobilenet_v2", SequentialMergeBatchNorm),
    ):
        network = seeded(name)
        (found,) = canonizers(network, dict(network.named_modules()))
        assert type(found) is expected


def _grouped() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(4, 2),
    ).eval()  # fmt: skip


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_grouped, "no LRP rule covers these layers: 1 \\(GroupNorm\\)"),
        (lambda: seeded("mobilenet_v2"), "adds activations outside"),
        (lambda: seeded("mobilenet_v3_small"), "adds activations outside|multiplies"),
    ],
    ids=["group norm", "inverted residuals", "squeeze-excitation"],
)
def test_lrp_is_refused_before_any_work(make: Any, reason: str) -> None:
    network = make()
    inventory_of(network, (32, 32))
    with counting(network) as passes, pytest.raises(IncompatibleModelError, match=reason):
        run_methods(network, torch.randn(1, 3, 32, 32), [("lrp", {})], target=1)
    assert passes.forwards == 0
    assert count_hooks(network) == 0


def test_lrp_is_refused_on_the_default_model(default_model: LoadedModel) -> None:
    """efficientnet_lite0's inverted residuals add activations no canonizer rewrites."""
    with pytest.raises(IncompatibleModelError, match="residual sums"):
        run_methods(default_model, torch.zeros(1, 3, 224, 224), [("lrp", {})], target=1)
