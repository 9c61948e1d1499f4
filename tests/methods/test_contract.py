"""Registry-wide contract: every method, after success and after an exception, leaves no hook,
keeps weights, .grad, requires_grad and training flags as they were, and never touches the input."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any

import pytest
import torch
from torch import nn

from cnnlens.errors import CnnlensError
from cnnlens.methods import get_method, method_names, run_methods
from cnnlens.models import count_hooks

# Cheap settings so the whole registry runs in seconds; unknown methods use their defaults.
FAST_PARAMS: dict[str, dict[str, Any]] = {
    "occlusion": {"window": 8, "stride": 8},
    "activation_max": {"steps": 3},
    "adversarial": {"steps": 2},
    "integrated_gradients": {"steps": 2},
    "smoothgrad": {"samples": 2},
    "gradient_shap": {"n_samples": 2},
    "lime": {"n_samples": 6, "segments": 4},
    "kernel_shap": {"n_samples": 6, "segments": 4},
    "feature_ablation": {"segments": 4},
    "ablation_cam": {"channels": 4},
}


class Tripwire(nn.Module):
    """Identity that raises once armed: an exception in the middle of any forward."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.armed:
            raise RuntimeError("tripwire")
        return x


def small_cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(3, 8, 3, padding=1),
            relu1=nn.ReLU(inplace=True),
            pool1=nn.MaxPool2d(2),
            conv2=nn.Conv2d(8, 16, 3, padding=1),
            tripwire=Tripwire(),
            relu2=nn.ReLU(),
            gap=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
            fc=nn.Linear(16, 10),
        )
    )


def fingerprint(model: nn.Module) -> dict[str, Any]:
    digest = hashlib.sha256()
    for tensor in model.state_dict().values():
        digest.update(tensor.detach().numpy().tobytes())
    return {
        "weights": digest.hexdigest(),
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "training": [m.training for m in model.modules()],
        "hooks": count_hooks(model),
    }


def assert_same(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert after["hooks"] == before["hooks"] == 0
    assert after["weights"] == before["weights"]
    assert after["requires_grad"] == before["requires_grad"]
    assert after["training"] == before["training"]
    for old, new in zip(before["grads"], after["grads"], strict=True):
        assert (old is None and new is None) or torch.equal(old, new)


@pytest.fixture
def model_in_training_mode() -> nn.Sequential:
    """A model as a user might hand it over: training mode, trainable, with a stale .grad."""
    model = small_cnn().train()
    model.fc.weight.grad = torch.full_like(model.fc.weight, 7.0)
    return model


ALL_METHODS = method_names()


@pytest.mark.parametrize("method", ALL_METHODS)
def test_success_leaves_everything_as_it_was(
    method: str, model_in_training_mode: nn.Sequential
) -> None:
    model = model_in_training_mode
    x = torch.randn(2, 3, 32, 32)
    x_before = x.clone()
    before = fingerprint(model)
    result = run_methods(model, x, [(method, FAST_PARAMS.get(method, {}))], target=[1, 2])
    assert_same(before, fingerprint(model))
    assert torch.equal(x, x_before)
    output = result.outputs[method].map
    assert torch.isfinite(output).all()
    if get_method(method).produces != "weights":
        assert output.shape[0] == 2 and output.dim() == 4
        assert output.shape[1] in (1, 3) and tuple(output.shape[-2:]) == (32, 32)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_exception_leaves_everything_as_it_was(
    method: str, model_in_training_mode: nn.Sequential
) -> None:
    if get_method(method).produces == "weights":
        pytest.skip("reads weights only: no forward to interrupt")
    model = model_in_training_mode
    x = torch.randn(1, 3, 32, 32)
    before = fingerprint(model)
    model.tripwire.armed = True
    with pytest.raises(RuntimeError, match="tripwire"):
        run_methods(model, x, [(method, FAST_PARAMS.get(method, {}))], target=3)
    assert_same(before, fingerprint(model))


@pytest.mark.parametrize("method", ALL_METHODS)
def test_bad_params_are_caller_errors(method: str) -> None:
    with pytest.raises(CnnlensError):
        run_methods(small_cnn(), torch.randn(1, 3, 32, 32), [(method, {"no_such_param": 1})])


def test_unknown_layer_and_method_are_caller_errors() -> None:
    model = small_cnn()
    with pytest.raises(CnnlensError, match="unknown layer"):
        run_methods(model, torch.randn(1, 3, 32, 32), [("grad_cam", {})], layer="nope")
    with pytest.raises(CnnlensError, match="unknown method"):
        run_methods(model, torch.randn(1, 3, 32, 32), [("nope", {})])
    assert count_hooks(model) == 0


def test_guided_methods_refuse_silu_models() -> None:
    model = small_cnn()
    model.relu2 = nn.SiLU()  # type: ignore[assignment]
    with pytest.raises(CnnlensError, match="undefined for this model"):
        run_methods(model, torch.randn(1, 3, 32, 32), [("guided_backprop", {})])
    assert count_hooks(model) == 0
    run_methods(model, torch.randn(1, 3, 32, 32), [("saliency", {}), ("grad_cam", {})])


def test_concurrent_sessions_never_mix_rules() -> None:
    """Guided and plain gradients on one model from two threads equal the serial results."""
    model = small_cnn().eval()
    x = torch.randn(1, 3, 32, 32)
    expected = {
        name: run_methods(model, x, [(name, {})], target=4).outputs[name].map
        for name in ("guided_backprop", "saliency")
    }
    errors: list[str] = []

    def worker(name: str) -> None:
        for _ in range(15):
            got = run_methods(model, x, [(name, {})], target=4).outputs[name].map
            if not torch.allclose(got, expected[name]):
                errors.append(name)

    threads = [threading.Thread(target=worker, args=(n,)) for n in expected for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert count_hooks(model) == 0


def test_one_forward_serves_every_gradient_method() -> None:
    """Shared-pass maps equal single-method maps, and the model runs forward once."""
    model = small_cnn().eval()
    x = torch.randn(2, 3, 32, 32)
    run_methods(model, x, [("grad_cam", {})])  # the first call also traces the layer inventory
    calls = []
    handle = model.conv1.register_forward_pre_hook(lambda module, inputs: calls.append(1))
    names = ["saliency", "guided_backprop", "deconvnet", "grad_cam", "guided_grad_cam", "cam"]
    shared = run_methods(model, x, [(n, {}) for n in names], target=[1, 2])
    handle.remove()
    assert len(calls) == 1
    for name in names:
        alone = run_methods(model, x, [(name, {})], target=[1, 2]).outputs[name].map
        torch.testing.assert_close(shared.outputs[name].map, alone)
