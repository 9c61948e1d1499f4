"""Every hook and torch-function mode of the package lives in models/hooks.py, and the layer
inventory's trace keeps the hook manager's lock and restore guarantees."""

from __future__ import annotations

import contextlib
import re
import threading
from pathlib import Path

import torch
from torch import nn

import cnnlens
from cnnlens.models.hooks import model_lock
from cnnlens.models.layers import inspect_layers
from cnnlens.models.loaded import LoadedModel
from cnnlens.models.preprocess import Preprocessing

PACKAGE = Path(cnnlens.__file__).parent
HOOK_CALLS = re.compile(r"\.register_\w*hook\(|TorchFunctionMode\b")


def test_no_hook_or_mode_outside_the_hook_manager() -> None:
    found = [
        f"{path.relative_to(PACKAGE)}:{number}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "hooks.py" or path.parent.name != "models"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if HOOK_CALLS.search(line.split("#")[0])
    ]
    assert found == []


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 3))


def test_inventory_restores_modes_and_leaves_no_hook_even_on_error() -> None:
    net = _net().train()
    net[1].eval()  # mixed flags must come back as they were
    flags = [m.training for m in net.modules()]
    inventory = inspect_layers(net, (12, 12))
    assert [layer.name for layer in inventory.layers] == ["0", "1", "2", "3"]
    assert [layer.receptive_field for layer in inventory.layers] == [3, 3, 3, 5]
    assert [m.training for m in net.modules()] == flags
    assert all(p.requires_grad for p in net.parameters())
    assert all(not m._forward_hooks for m in net.modules())

    class Broken(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("boom")

    net.append(Broken())
    with contextlib.suppress(RuntimeError):
        inspect_layers(net, (12, 12))
    assert all(not m._forward_hooks for m in net.modules())
    assert [m.training for m in net.modules()][:5] == flags


def test_inventory_waits_for_a_running_session() -> None:
    """The trace takes the model's session lock: it cannot interleave with a session."""
    net = _net().eval()
    loaded = LoadedModel("tiny", net, Preprocessing(), (), None, "none")
    assert loaded.lock is model_lock(net)
    traced = threading.Event()
    with loaded.lock:
        worker = threading.Thread(target=lambda: (inspect_layers(net, (12, 12)), traced.set()))
        worker.start()
        assert not traced.wait(0.3)  # blocked while the lock is held
    worker.join(timeout=60)
    assert traced.is_set()
