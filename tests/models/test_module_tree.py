"""The module-tree walk is kept across sessions and redone whenever the tree changed."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable

import pytest
import torch
from torch import nn

from cnnlens.methods.run import attribute
from cnnlens.models.hooks import hook_session, registrations
from cnnlens.models.module_tree import _WALKS, module_tree


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    ).eval()


def _matches(net: nn.Module) -> bool:
    tree = module_tree(net, registrations())
    same_modules = list(tree.named.items()) == list(net.named_modules())
    same_parameters = [id(p) for p in tree.parameters] == [id(p) for p in net.parameters()]
    return same_modules and same_parameters


def test_the_walk_is_kept_while_nothing_changes() -> None:
    net = _net()
    module_tree(net, registrations())
    walk = _WALKS[net]
    with hook_session(net, layers=["3.0"]) as session:
        session.forward(torch.rand(1, 3, 8, 8))
    assert _WALKS[net] is walk
    assert _matches(net)


def _replace_child(net: nn.Sequential) -> None:
    net[3][0] = nn.Conv2d(4, 4, 1)


def _delete_child(net: nn.Sequential) -> None:
    del net[3][1]


def _append_child(net: nn.Sequential) -> None:
    net.append(nn.Softmax(dim=1))


def _add_module(net: nn.Sequential) -> None:
    net[3].add_module("extra", nn.Identity())


def _child_to_none(net: nn.Sequential) -> None:
    net[3][1] = None


def _replace_parameter(net: nn.Sequential) -> None:
    net[0].weight = nn.Parameter(torch.zeros_like(net[0].weight))


def _delete_parameter(net: nn.Sequential) -> None:
    del net[0].bias


def _register_parameter(net: nn.Sequential) -> None:
    net[6].register_parameter("scale", nn.Parameter(torch.ones(1)))


CHANGES: list[Callable[[nn.Sequential], None]] = [
    _replace_child,
    _delete_child,
    _append_child,
    _add_module,
    _child_to_none,
    _replace_parameter,
    _delete_parameter,
    _register_parameter,
]


@pytest.mark.parametrize("change", CHANGES, ids=lambda change: change.__name__.strip("_"))
def test_any_change_to_the_tree_is_seen(change: Callable[[nn.Sequential], None]) -> None:
    net = _net()
    assert _matches(net)
    change(net)
    assert _matches(net)


def test_a_replaced_layer_is_the_one_explained() -> None:
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    net = _net()
    before = attribute("grad_cam", net, x, target=0, layer="3.0")
    torch.manual_seed(5)
    replacement = nn.Conv2d(4, 4, 3, padding=1)
    net[3][0] = replacement
    after = attribute("grad_cam", net, x, target=0, layer="3.0")

    fresh = _net()
    fresh[3][0] = nn.Conv2d(4, 4, 3, padding=1)
    fresh[3][0].load_state_dict(replacement.state_dict())
    _WALKS.pop(fresh, None)
    assert torch.allclose(after, attribute("grad_cam", fresh, x, target=0, layer="3.0"))
    assert not torch.allclose(before, after)


def test_train_mode_set_between_sessions_is_undone_during_each_session() -> None:
    net = _net()
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = net(x)
    with hook_session(net) as session:
        session.forward(x)
    net.train()
    with hook_session(net) as session:
        assert not any(module.training for module in net.modules())
        assert torch.allclose(session.forward(x, input_grad=False), expected)
    assert all(module.training for module in net.modules())


def test_kept_walks_do_not_keep_a_model_alive() -> None:
    net = _net()
    attribute("grad_cam", net, torch.rand(1, 3, 8, 8), target=0, layer="3.0")
    assert net in _WALKS
    alive = weakref.ref(net)
    del net
    gc.collect()
    assert alive() is None
