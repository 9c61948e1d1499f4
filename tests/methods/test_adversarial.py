"""Adversarial inputs: FGSM / PGD steps against hand-computed gradients, and real attacks."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from cnnlens.errors import InvalidParamsError, TargetError
from cnnlens.methods import MethodOutput, run_methods
from cnnlens.models import LoadedModel, Preprocessing, count_hooks
from cnnlens.targets import Classes
from tests.conftest import EGYPTIAN_CAT
from tests.tiny import FC, FC_BIAS, input_gradient, pre_activations, tiny_cnn, tiny_input

BELL_PEPPER = 945
STD = np.array(Preprocessing().std).reshape(3, 1, 1)  # bare modules get ImageNet statistics


def tiny_probabilities() -> np.ndarray:
    """softmax(FC . mean_p ReLU(a) + b) for the tiny net's input, by hand: (2,)."""
    pooled = np.maximum(pre_activations(), 0).mean(axis=(1, 2))
    logits = FC @ pooled + FC_BIAS
    exp = np.exp(logits - logits.max())
    return exp / exp.sum()


def cross_entropy_gradient(label: int) -> np.ndarray:
    """dCE(label)/dx = sum_c (p_c - [c == label]) dS_c/dx, (3, 2, 2)."""
    probabilities = tiny_probabilities()
    return sum(
        (probabilities[c] - (c == label)) * input_gradient(c, "gradient") for c in range(len(FC))
    )


def attack(
    model: torch.nn.Module | LoadedModel, x: torch.Tensor, target: Classes = None, **params: Any
) -> MethodOutput:
    return run_methods(model, x, [("adversarial", params)], target=target).outputs["adversarial"]


def test_fgsm_steps_along_the_sign_of_the_analytic_gradient() -> None:
    model, x = tiny_cnn(), tiny_input()
    output = attack(model, x, attack="fgsm", epsilon=8)
    label = int(np.argmax(tiny_probabilities()))
    sign = np.sign(cross_entropy_gradient(label))  # ascend the loss of the predicted class
    assert (sign != 0).sum() >= 10  # the check is about real steps, not zeros
    pixels = output.extras["perturbation_pixels"][0].numpy()
    np.testing.assert_allclose(pixels, 8 * sign, atol=1e-4)
    np.testing.assert_allclose(output.map[0].numpy(), 8 / 255 * sign / STD, atol=1e-5)
    torch.testing.assert_close(output.extras["adversarial"], x + output.map)
    assert output.extras["original_class"].tolist() == [label]
    assert output.extras["original_probability"].item() == pytest.approx(
        tiny_probabilities().max(), abs=1e-6
    )


def test_targeted_step_descends_the_target_loss() -> None:
    model, x = tiny_cnn(), tiny_input()
    label = int(np.argmax(tiny_probabilities()))
    target = 1 - label
    output = attack(model, x, attack="pgd", steps=1, step_size=2, adversarial_target=target)
    expected = -2 * np.sign(cross_entropy_gradient(target))
    np.testing.assert_allclose(output.extras["perturbation_pixels"][0].numpy(), expected, atol=1e-4)


def test_pgd_stays_in_the_ball_and_in_pixel_range() -> None:
    model = tiny_cnn()
    pixels = torch.tensor([[0.0, 1.0], [0.995, 0.01]]).expand(1, 3, 2, 2)  # at / near the edges
    x = Preprocessing().normalize(pixels)
    output = attack(model, x, steps=7, step_size=5, epsilon=3, random_start=True, seed=3)
    perturbation = output.extras["perturbation_pixels"]
    assert perturbation.abs().max() <= 3 + 1e-4
    adversarial = Preprocessing().denormalize(output.extras["adversarial"])
    assert adversarial.min() >= -1e-6 and adversarial.max() <= 1 + 1e-6
    torch.testing.assert_close(adversarial, pixels + perturbation / 255, atol=1e-5, rtol=0)


def test_random_start_is_seeded() -> None:
    model, x = tiny_cnn(), tiny_input()
    runs = [attack(model, x, steps=1, random_start=True, seed=s).map for s in (1, 1, 2)]
    torch.testing.assert_close(runs[0], runs[1])
    assert not torch.allclose(runs[0], runs[2])


def test_stop_on_success_freezes_a_sample_that_already_succeeded() -> None:
    model, x = tiny_cnn(), tiny_input()
    label = int(np.argmax(tiny_probabilities()))
    stopped = attack(model, x, adversarial_target=label, stop_on_success=True)
    assert stopped.map.abs().max() == 0 and stopped.extras["success"].tolist() == [True]
    kept_going = attack(model, x, adversarial_target=label)
    assert kept_going.map.abs().max() > 0


def test_batch_samples_are_independent() -> None:
    model = tiny_cnn()
    x = torch.cat([tiny_input(), tiny_input().flip(-1) * 0.5])
    batch = attack(model, x, target=[0, 1], steps=3)
    for row, target in enumerate([0, 1]):
        alone = attack(model, x[row : row + 1], target=target, steps=3)
        torch.testing.assert_close(batch.map[row : row + 1], alone.map)
        assert batch.extras["success"][row] == alone.extras["success"][0]


@pytest.mark.parametrize(
    "params",
    [
        {"epsilon": 0},
        {"epsilon": 256},
        {"steps": 0},
        {"steps": 1001},
        {"step_size": -1},
        {"attack": "cw"},
        {"seed": -1},
    ],
)
def test_bad_params_are_rejected(params: dict) -> None:
    with pytest.raises(InvalidParamsError):
        attack(tiny_cnn(), tiny_input(), **params)


def test_unknown_target_class_is_a_target_error() -> None:
    with pytest.raises(TargetError):
        attack(tiny_cnn(), tiny_input(), adversarial_target=7)


def test_targeted_pgd_turns_the_cat_into_a_bell_pepper(
    default_model: LoadedModel, chelsea_batch: torch.Tensor
) -> None:
    x = chelsea_batch.clone()
    output = attack(default_model, x, attack="pgd", adversarial_target="bell pepper")
    extras = output.extras
    assert extras["original_class"].tolist() == [EGYPTIAN_CAT]
    assert extras["adversarial_class"].tolist() == [BELL_PEPPER]
    assert extras["success"].tolist() == [True]
    with torch.no_grad():
        logits = default_model.module(extras["adversarial"])
    assert logits.argmax(dim=1).tolist() == [BELL_PEPPER]
    assert extras["perturbation_pixels"].abs().max() <= 8 + 1e-4
    pixels = default_model.preprocessing.denormalize(extras["adversarial"])
    assert pixels.min() >= -1e-6 and pixels.max() <= 1 + 1e-6
    torch.testing.assert_close(extras["adversarial"], chelsea_batch + output.map)
    assert torch.equal(x, chelsea_batch)
    assert count_hooks(default_model.module) == 0
    assert all(p.grad is None and not p.requires_grad for p in default_model.module.parameters())


def test_untargeted_fgsm_lowers_the_cat(
    default_model: LoadedModel, chelsea_batch: torch.Tensor
) -> None:
    output = attack(default_model, chelsea_batch, attack="fgsm", epsilon=8)
    extras = output.extras
    original = extras["original_probability"].item()
    assert extras["target_probability"].item() < original / 2  # the cat's probability falls
    assert extras["perturbation_pixels"].abs().max() <= 8 + 1e-4
    # FGSM moves every pixel by exactly epsilon unless it meets the edge of [0, 1].
    assert (extras["perturbation_pixels"].abs() > 7.99).float().mean() > 0.9
    assert count_hooks(default_model.module) == 0
