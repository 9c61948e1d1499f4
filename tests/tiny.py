"""A tiny CNN with fixed weights whose explanations can be computed by hand."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from torch import nn

# conv 1x1: 3 -> 2 channels; ReLU; global average pool; linear 2 -> 2.
CONV = np.array([[1.0, -2.0, 0.5], [-1.0, 1.0, 2.0]])  # (K=2, C=3)
FC = np.array([[2.0, -1.0], [-0.5, 3.0]])  # (classes=2, K=2)
FC_BIAS = np.array([0.1, -0.2])
# (C=3, H=2, W=2): chosen so that each channel is positive at some pixels, negative at others.
INPUT = np.array(
    [
        [[1.0, -1.0], [0.5, 2.0]],
        [[0.2, 0.4], [-1.0, 0.3]],
        [[-0.5, 1.5], [1.0, -0.7]],
    ]
)


def tiny_cnn(activation: nn.Module | None = None) -> nn.Module:
    conv = nn.Conv2d(3, 2, kernel_size=1, bias=False)
    fc = nn.Linear(2, 2)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(CONV, dtype=torch.float32).view(2, 3, 1, 1))
        fc.weight.copy_(torch.tensor(FC, dtype=torch.float32))
        fc.bias.copy_(torch.tensor(FC_BIAS, dtype=torch.float32))
    return nn.Sequential(
        OrderedDict(
            conv=conv,
            relu=activation or nn.ReLU(),
            pool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
            fc=fc,
        )
    ).eval()


def tiny_input() -> torch.Tensor:
    return torch.tensor(INPUT, dtype=torch.float32).unsqueeze(0)  # (1, 3, 2, 2)


def pre_activations() -> np.ndarray:
    """a_k(p) = sum_c w_kc x_c(p), (K, H, W)."""
    return np.einsum("kc,chw->khw", CONV, INPUT)


def input_gradient(target: int, rule: str) -> np.ndarray:
    """dS_t/dx under a ReLU rule, by the chain rule written out: (C, H, W)."""
    a = pre_activations()
    pixels = a.shape[1] * a.shape[2]
    upstream = np.broadcast_to((FC[target] / pixels)[:, None, None], a.shape)  # dS/dr, (K,H,W)
    if rule == "gradient":
        through = upstream * (a > 0)
    elif rule == "guided":
        through = np.maximum(upstream, 0) * (a > 0)
    else:  # deconv
        through = np.maximum(upstream, 0)
    return np.einsum("khw,kc->chw", through, CONV)


def grad_cam(target: int) -> np.ndarray:
    """ReLU(sum_k alpha_k r_k) with alpha_k = mean_p dS/dr_k(p) = FC[t, k] / P: (H, W)."""
    r = np.maximum(pre_activations(), 0)
    pixels = r.shape[1] * r.shape[2]
    alpha = FC[target] / pixels
    return np.maximum(np.einsum("k,khw->hw", alpha, r), 0)


def cam(target: int) -> np.ndarray:
    r = np.maximum(pre_activations(), 0)
    return np.maximum(np.einsum("k,khw->hw", FC[target], r), 0)


def summing_model() -> nn.Module:
    """logits = [sum of the (1, 3, 2, 2) input, 0]: p(class 0) = sigmoid(sum)."""
    linear = nn.Linear(12, 2)
    with torch.no_grad():
        linear.weight.zero_()
        linear.weight[0] = 1.0
        linear.bias.zero_()
    return nn.Sequential(nn.Flatten(), linear).eval()
