"""Captum and Zennit run inside cnnlens's hook session: whatever a library leaves on the model
is undone, the new methods and Grad-CAM alternate on one model without changing each other's
results, and a thread running Grad-CAM never sees LRP's merged weights."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn.modules import module as torch_module

from cnnlens.methods import run_methods
from cnnlens.models import count_hooks
from cnnlens.models.hooks import library_hooks, substitute_output

NEW_METHODS: dict[str, dict[str, Any]] = {
    "deeplift": {},
    "deeplift_shap": {},
    "gradient_shap": {"n_samples": 3},
    "input_x_gradient": {},
    "lime": {"n_samples": 8, "segments": 4},
    "kernel_shap": {"n_samples": 8, "segments": 4},
    "feature_ablation": {"segments": 4},
    "lrp": {},
    "hirescam": {},
    "xgrad_cam": {},
    "layer_cam": {},
    "eigen_cam": {},
    "ablation_cam": {"channels": 4},
}


def normed_cnn() -> nn.Sequential:
    """conv, batch norm (merged by LRP's canonizer), ReLU, conv, ReLU, GAP, linear."""
    torch.manual_seed(0)
    model = nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(3, 8, 3, padding=1),
            bn1=nn.BatchNorm2d(8),
            relu1=nn.ReLU(),
            conv2=nn.Conv2d(8, 8, 3, padding=1),
            relu2=nn.ReLU(),
            gap=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
            fc=nn.Linear(8, 5),
        )
    )
    with torch.no_grad():
        model.bn1.running_mean.uniform_(-0.5, 0.5)
        model.bn1.running_var.uniform_(0.5, 2.0)
        model.bn1.weight.uniform_(0.5, 2.0)
    return model.eval()


def snapshot(model: nn.Module) -> dict[str, Any]:
    return {
        "state": {name: tensor.clone() for name, tensor in model.state_dict().items()},
        "objects": [id(p) for p in model.parameters()],
        "storages": [p.untyped_storage().data_ptr() for p in model.parameters()],
        "attributes": [sorted(vars(module)) for module in model.modules()],
        "children": [list(module._modules) for module in model.modules()],
        "hooks": count_hooks(model),
    }


def assert_as_before(model: nn.Module, before: dict[str, Any]) -> None:
    after = snapshot(model)
    assert after["hooks"] == before["hooks"] == 0
    for key in ("objects", "storages", "attributes", "children"):
        assert after[key] == before[key], key
    for name, tensor in before["state"].items():
        assert torch.equal(after["state"][name], tensor), name


def test_library_hooks_undo_whatever_a_library_leaves_even_on_error() -> None:
    model = normed_cnn()
    before = snapshot(model)
    weight = model.conv1.weight
    with pytest.raises(RuntimeError, match="library failed"), library_hooks(model):
        model.conv1.register_forward_hook(lambda *args: None)
        model.relu1.register_forward_pre_hook(lambda *args: None)
        model.fc.register_full_backward_hook(lambda *args: None)
        torch_module.register_module_forward_hook(lambda *args: None)
        model.relu1.input = torch.ones(1)  # DeepLIFT's stored reference
        model.conv2.forward = lambda x: x  # a canonizer's forward
        model.conv1.weight = nn.Parameter(torch.zeros_like(weight))  # a rule's parameter swap
        model.conv2.weight.data = torch.zeros_like(model.conv2.weight)  # a merged weight
        model.bn1.running_mean.data = torch.zeros(8)  # a batch norm turned into identity
        model.conv2.canonizer_sum = nn.Identity()  # a canonizer's new child
        raise RuntimeError("library failed")
    assert_as_before(model, before)
    assert model.conv1.weight is weight
    assert not torch_module._global_forward_hooks


def test_substitute_output_is_removed_on_error() -> None:
    model = normed_cnn()
    with (
        pytest.raises(RuntimeError, match="boom"),
        substitute_output(model, "relu1", torch.zeros_like),
    ):
        # The rest of the model sees zeros, whatever the image.
        assert torch.equal(model(torch.randn(1, 3, 8, 8)), model(torch.randn(1, 3, 8, 8)))
        raise RuntimeError("boom")
    assert count_hooks(model) == 0


@pytest.mark.parametrize("method", sorted(NEW_METHODS))
def test_a_new_method_and_grad_cam_alternate_without_changing_each_other(method: str) -> None:
    model = normed_cnn()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    before = snapshot(model)

    def run(name: str, params: dict[str, Any]) -> torch.Tensor:
        return (
            run_methods(model, x, [(name, params)], target=[1, 3], layer="relu2").outputs[name].map
        )

    first_cam, first = run("grad_cam", {}), run(method, NEW_METHODS[method])
    second_cam, second = run("grad_cam", {}), run(method, NEW_METHODS[method])
    assert torch.equal(first_cam, second_cam)
    assert torch.equal(first, second)
    assert_as_before(model, before)


def test_grad_cam_on_another_thread_never_sees_lrps_merged_weights() -> None:
    model = normed_cnn()
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    expected = run_methods(model, x, [("grad_cam", {})], target=1).outputs["grad_cam"].map
    wrong: list[int] = []

    def grad_cams() -> None:
        for _ in range(20):
            found = run_methods(model, x, [("grad_cam", {})], target=1).outputs["grad_cam"].map
            wrong.extend([1] if not torch.allclose(found, expected) else [])

    def lrps() -> None:
        for _ in range(20):
            run_methods(model, x, [("lrp", {})], target=1)

    threads = [threading.Thread(target=grad_cams), threading.Thread(target=lrps)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not wrong
    assert count_hooks(model) == 0
