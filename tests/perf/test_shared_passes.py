"""Shared passes: one forward and at most one backward per ReLU rule for a whole explain call.

Counts come from wrapper modules (forwards) and an autograd function on the logits (backward
passes), never from wall-clock time; shared maps must equal each method run alone.
"""

from __future__ import annotations

import copy
import dataclasses
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from PIL import Image
from torch import nn

from cnnlens.explain import explain
from cnnlens.methods import run_methods
from cnnlens.models import LoadedModel
from cnnlens.models.hooks import HookSession, ReluRule

SIX = ["saliency", "guided_backprop", "deconvnet", "grad_cam", "guided_grad_cam", "cam"]
ATOL = 1e-6


class PassCounter:
    def __init__(self) -> None:
        self.forwards = 0
        self.backwards = 0
        self.rules: list[ReluRule] = []


class _CountBackward(torch.autograd.Function):
    """Identity on the logits whose backward counts the backward passes that reach them."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, counter: PassCounter) -> torch.Tensor:
        ctx.counter = counter
        return logits.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        ctx.counter.backwards += 1
        return grad, None


class CountForwards(nn.Module):
    """Wraps the first module of a model: one call = one forward of the whole model."""

    def __init__(self, inner: nn.Module, counter: PassCounter) -> None:
        super().__init__()
        self.inner = inner
        self.counter = counter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.counter.forwards += 1
        return self.inner(x)


class CountBackwards(nn.Module):
    """Wraps the classifier head: every backward from the scores passes through it."""

    def __init__(self, inner: nn.Module, counter: PassCounter) -> None:
        super().__init__()
        self.inner = inner
        self.counter = counter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _CountBackward.apply(self.inner(x), self.counter)


@pytest.fixture
def rules_used(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[ReluRule]]:
    """The ReLU rule of every backward the hook manager runs."""
    rules: list[ReluRule] = []
    original = HookSession.gradients

    def spy(self: HookSession, scores: torch.Tensor, wrt: Any, rule: Any = "gradient", **kw: Any):
        rules.append(ReluRule(rule))
        return original(self, scores, wrt, rule, **kw)

    monkeypatch.setattr(HookSession, "gradients", spy)
    yield rules


def small_cnn(counter: PassCounter) -> nn.Sequential:
    """conv-BN-ReLU-maxpool, conv-ReLU6 (in place), GAP, linear: 5 classes."""
    torch.manual_seed(3)
    model = nn.Sequential(
        CountForwards(nn.Conv2d(3, 6, 3, padding=1), counter),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1),
        nn.ReLU6(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        CountBackwards(nn.Linear(8, 5), counter),
    )
    norm = model[1]
    assert isinstance(norm, nn.BatchNorm2d)
    with torch.no_grad():  # BN statistics that are not the identity
        norm.register_buffer("running_mean", torch.linspace(-0.2, 0.2, 6))
        norm.register_buffer("running_var", torch.linspace(0.5, 2.0, 6))
    return model.eval()


def test_six_methods_share_one_forward_and_one_backward_per_rule(
    rules_used: list[ReluRule],
) -> None:
    counter = PassCounter()
    model = small_cnn(counter)
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    targets = [0, 3, 4]
    run_methods(model, x, [("grad_cam", {})])  # traces the layer inventory once
    counter.forwards = counter.backwards = 0
    rules_used.clear()

    shared = run_methods(model, x, [(n, {}) for n in SIX], target=targets)

    assert counter.forwards == 1
    assert counter.backwards == 3  # three samples, three targets: still one per rule
    assert Counter(rules_used) == {ReluRule.GRADIENT: 1, ReluRule.GUIDED: 1, ReluRule.DECONV: 1}
    assert all(p.grad is None for p in model.parameters())
    for name in SIX:
        alone = run_methods(model, x, [(name, {})], target=targets).outputs[name]
        torch.testing.assert_close(shared.outputs[name].map, alone.map, atol=ATOL, rtol=0)


def test_methods_of_one_rule_need_one_backward(rules_used: list[ReluRule]) -> None:
    counter = PassCounter()
    model = small_cnn(counter)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    run_methods(model, x, [("cam", {})])
    counter.forwards = counter.backwards = 0
    rules_used.clear()
    run_methods(model, x, [("saliency", {}), ("grad_cam", {}), ("cam", {})])
    assert (counter.forwards, counter.backwards) == (1, 1)
    assert rules_used == [ReluRule.GRADIENT]
    counter.forwards = counter.backwards = 0
    run_methods(model, x, [("cam", {})])
    assert (counter.forwards, counter.backwards) == (1, 0)  # CAM needs no backward at all


def test_each_target_row_equals_that_target_alone() -> None:
    counter = PassCounter()
    model = small_cnn(counter)
    image = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    targets = [1, 2, 4]
    batched = run_methods(
        model, image.expand(3, -1, -1, -1), [(n, {}) for n in SIX], target=targets
    )
    for row, target in enumerate(targets):
        single = run_methods(model, image, [(n, {}) for n in SIX], target=target)
        for name in SIX:
            torch.testing.assert_close(
                batched.outputs[name].map[row : row + 1],
                single.outputs[name].map,
                atol=ATOL,
                rtol=0,
            )


def counting_copy(model: LoadedModel, counter: PassCounter) -> LoadedModel:
    """The default model with counting wrappers on its stem and its classifier."""
    module = copy.deepcopy(model.module)
    module.conv_stem = CountForwards(module.get_submodule("conv_stem"), counter)
    module.classifier = CountBackwards(module.get_submodule("classifier"), counter)
    copied = dataclasses.replace(model, module=module)
    copied.__dict__.pop("layers", None)  # layer names are traced again on the wrapped module
    return copied


def test_explain_on_the_default_model_shares_its_passes(
    default_model: LoadedModel, chelsea: Image.Image, rules_used: list[ReluRule]
) -> None:
    counter = PassCounter()
    model = counting_copy(default_model, counter)
    small = chelsea.resize((96, 96))
    explain(model, small, methods=["grad_cam"], target=285)  # traces the inventory
    counter.forwards = counter.backwards = 0
    rules_used.clear()

    targets: list[int | str] = [285, "tabby", "espresso"]
    explanations = explain(model, small, methods=SIX, target=targets)

    assert counter.forwards == 1
    assert counter.backwards == 3
    assert Counter(rules_used) == {ReluRule.GRADIENT: 1, ReluRule.GUIDED: 1, ReluRule.DECONV: 1}
    assert len(explanations) == len(SIX) * len(targets)
    for name in ("saliency", "guided_grad_cam", "deconvnet"):
        alone = explain(default_model, small, methods=[name], target=targets)
        shared = [e for e in explanations if e.method == name]
        for ours, reference in zip(shared, alone, strict=True):
            assert ours.target == reference.target
            torch.testing.assert_close(
                torch.from_numpy(ours.map), torch.from_numpy(reference.map), atol=ATOL, rtol=0
            )


def test_grad_cams_backward_stops_at_its_layer(rules_used: list[ReluRule]) -> None:
    """Grad-CAM alone: one backward from the logits that never reaches the stem."""
    head, stem = PassCounter(), PassCounter()
    model = small_cnn(head)
    model[0] = CountBackwards(model[0], stem)  # counts backwards that reach the first conv
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    run_methods(model, x, [("grad_cam", {})])
    assert (head.backwards, stem.backwards) == (1, 0)
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    run_methods(model, x, [("saliency", {})])
    assert (head.backwards, stem.backwards) == (2, 1)  # the input gradient does reach it
