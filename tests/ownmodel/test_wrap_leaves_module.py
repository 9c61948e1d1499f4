"""A researcher's module, wrapped mid-training: `wrap` and every explanation leave it as it was
(training flags, requires_grad, hooks, buffers), on error too, so that training goes on; the
train-mode warning comes once per model."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import cnnlens
from cnnlens import wrap
from cnnlens.models import count_hooks

METHODS = [
    "grad_cam", "saliency", "guided_backprop", "integrated_gradients", "occlusion",
    "deeplift", "lrp", "lime", "ablation_cam",
]  # fmt: skip
PARAMS = {
    "integrated_gradients": {"steps": 4},
    "occlusion": {"window": 8, "stride": 8},
    "lime": {"n_samples": 8, "segments": 4},
    "ablation_cam": {"channels": 4},
}


class Tripwire(nn.Module):
    """Identity until armed: an error in the middle of a forward."""

    armed = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.armed:
            raise RuntimeError("tripwire")
        return x


def _in_training() -> tuple[nn.Sequential, list[int]]:
    """A small CNN as a user has it mid-training: train mode, one frozen conv, one batch norm
    kept in eval by the user, a forward hook of their own."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), Tripwire(),
        nn.Dropout(0.5), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3),
    ).train()  # fmt: skip
    net[0].weight.requires_grad_(False)
    net[1].eval()
    calls: list[int] = []
    net[3].register_forward_hook(lambda module, inputs, output: calls.append(1))
    return net, calls


def _state(net: nn.Module) -> dict[str, Any]:
    return {
        "training": [module.training for module in net.modules()],
        "requires_grad": [p.requires_grad for p in net.parameters()],
        "hooks": [len(module._forward_hooks) for module in net.modules()],
        "all_hooks": count_hooks(net),
        "tensors": {k: v.detach().clone() for k, v in net.state_dict().items()},
        "grads": [p.grad for p in net.parameters()],
    }


def _assert_same(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert after["training"] == before["training"]
    assert after["requires_grad"] == before["requires_grad"]
    assert after["hooks"] == before["hooks"] and after["all_hooks"] == before["all_hooks"]
    assert after["tensors"].keys() == before["tensors"].keys()
    for name, tensor in before["tensors"].items():  # weights and buffers (running stats)
        assert torch.equal(after["tensors"][name], tensor), name
    assert all(grad is None for grad in after["grads"])


def _picture(seed: int = 0) -> Image.Image:
    pixels = (np.random.default_rng(seed).random((40, 48, 3)) * 255).astype("uint8")
    return Image.fromarray(pixels)


def _train_step(net: nn.Module) -> None:
    optimizer = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.5)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(4, 3, 32, 32, generator=generator)
    loss = nn.functional.cross_entropy(net(x), torch.tensor([0, 1, 2, 0]))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def test_wrap_explain_then_a_training_step_that_changes_the_weights() -> None:
    net, calls = _in_training()
    before = _state(net)
    with pytest.warns(UserWarning, match="train mode") as warned:
        model = wrap(net, labels=["a", "b", "c"], preprocessing={"input_size": 32}, name="mine")
    assert len(warned) == 1 and model.was_training
    _assert_same(before, _state(net))  # wrap changed nothing

    with warnings.catch_warnings(record=True) as later:
        warnings.simplefilter("always")
        result = cnnlens.explain(model, _picture(), METHODS, params=PARAMS)
        again = cnnlens.explain(model, _picture(1), ["grad_cam"])
    assert not [w for w in later if "train mode" in str(w.message)]  # once per model: at wrap
    assert result.was_training and again.was_training
    assert [e.method for e in result] == METHODS and all(np.isfinite(e.map).all() for e in result)
    assert calls  # the user's own hook saw the forwards and is still there
    _assert_same(before, _state(net))  # explained in eval mode, frozen: all restored

    trained_before = net[3].weight.detach().clone()
    frozen_before = net[0].weight.detach().clone()
    stats_before = net[4].running_mean.clone()
    _train_step(net)
    assert net[3].weight.grad is not None and net[10].weight.grad is not None
    assert not torch.equal(net[3].weight, trained_before)  # training goes on
    assert torch.equal(net[0].weight, frozen_before)  # what the user froze stays frozen
    assert not torch.equal(net[4].running_mean, stats_before)  # train-mode batch norm updates
    assert net.training and not net[1].training

    after_training = _state(net)
    after_training["grads"] = [None] * len(after_training["grads"])
    for parameter in net.parameters():
        parameter.grad = None
    cnnlens.explain(model, _picture(), ["grad_cam", "saliency"])  # the new weights, explained
    _assert_same(after_training, _state(net))


def test_an_error_inside_an_explanation_restores_the_module() -> None:
    net, _ = _in_training()
    with pytest.warns(UserWarning, match="train mode"):
        model = wrap(net, labels=["a", "b", "c"], preprocessing={"input_size": 32})
    before = _state(net)
    net[6].armed = True
    for method in ("grad_cam", "guided_backprop", "occlusion", "deeplift", "lrp", "lime"):
        with pytest.raises(RuntimeError, match="tripwire"):
            cnnlens.explain(model, _picture(), [method], params=PARAMS)
        _assert_same(before, _state(net))


def test_the_train_mode_warning_comes_once_per_model() -> None:
    net, _ = _in_training()
    net.eval()
    with warnings.catch_warnings(record=True) as at_wrap:
        warnings.simplefilter("always")
        model = wrap(net, labels=["a", "b", "c"], preprocessing={"input_size": 32})
    assert not at_wrap and not model.was_training
    net.train()  # the user goes back to training, then explains again
    with warnings.catch_warnings(record=True) as explained:
        warnings.simplefilter("always")
        for seed in range(3):
            result = cnnlens.explain(model, _picture(seed), ["grad_cam"])
    assert [str(w.message) for w in explained if "train mode" in str(w.message)] == [
        "model 'custom' is in train mode; cnnlens explains it in eval mode (dropout off, "
        "batch-norm running statistics) and leaves its mode as it is"
    ]
    assert result.was_training and net.training


def test_load_models_module_is_restored_after_each_call_too() -> None:
    model = cnnlens.load_model(
        "torchvision:resnet18", weights="none", num_classes=3, preprocessing={"input_size": 32}
    )
    module = model.module
    assert not module.training  # load_model's own module: eval mode and frozen, as built
    module.train()
    for parameter in module.parameters():
        parameter.requires_grad_(True)  # a user who fine-tunes it
    before = _state(module)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cnnlens.explain(model, _picture(), ["grad_cam", "saliency"])
    _assert_same(before, _state(module))
    weights = module.fc.weight.detach().clone()
    _train_step(module)
    assert not torch.equal(module.fc.weight, weights)
