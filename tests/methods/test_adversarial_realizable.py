"""Saved adversarial images: the returned 8-bit PNG, uploaded again, is what the result says."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlens.errors import InvalidParamsError
from cnnlens.imageio import decode_image
from cnnlens.methods._realizable import quantize, resize_like_pil
from cnnlens.methods.adversarial_image import adversarial_image
from cnnlens.models import LoadedModel
from tests.conftest import EGYPTIAN_CAT

BELL_PEPPER = 945


def upload_prediction(model: LoadedModel, png: bytes) -> tuple[int, float]:
    """Top-1 of a PNG decoded and preprocessed exactly as an upload."""
    with torch.no_grad():
        logits = model.module(model.preprocessing(decode_image(png)))
    probabilities = logits.softmax(dim=1)[0]
    return int(probabilities.argmax()), float(probabilities.max())


@pytest.mark.parametrize("epsilon", [1, 2, 4, 8])
@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_returned_png_predicts_what_is_reported(
    default_model: LoadedModel, chelsea: Image.Image, attack: str, epsilon: int
) -> None:
    params = {"attack": attack, "epsilon": epsilon, "steps": 2, "step_size": epsilon / 2}
    result = adversarial_image(default_model, chelsea, params)
    assert result.image.size == chelsea.size == (451, 300)
    index, probability = upload_prediction(default_model, result.png)
    assert index == result.adversarial.index
    assert probability == pytest.approx(result.adversarial.probability, abs=1e-5)
    assert result.original.index == result.target.index == EGYPTIAN_CAT
    assert result.success == (index != EGYPTIAN_CAT)
    stored = np.asarray(decode_image(result.png), dtype=np.int16)
    change = stored - np.asarray(chelsea, dtype=np.int16)
    np.testing.assert_array_equal(change, result.perturbation)
    assert result.linf == np.abs(change).max() <= epsilon
    assert np.abs(change).max() == epsilon  # the whole budget is used somewhere


def test_model_size_output_is_what_the_model_sees(
    default_model: LoadedModel, chelsea: Image.Image
) -> None:
    result = adversarial_image(
        default_model, chelsea, {"attack": "fgsm", "epsilon": 2, "output_size": "model"}
    )
    assert result.image.size == (224, 224) and result.output_size == "model"
    assert upload_prediction(default_model, result.png)[0] == result.adversarial.index
    # Uploading a model-size image resizes nothing: the model sees exactly these pixels.
    seen = default_model.preprocessing(decode_image(result.png))
    pixels = default_model.preprocessing.denormalize(seen)[0].permute(1, 2, 0).numpy() * 255
    np.testing.assert_allclose(pixels, np.asarray(result.image), atol=1e-3)


def test_targeted_attack_reaches_its_class_on_the_saved_photo(
    default_model: LoadedModel, chelsea: Image.Image
) -> None:
    params = {"epsilon": 8, "adversarial_target": "bell pepper", "stop_on_success": True}
    result = adversarial_image(default_model, chelsea, params)
    assert result.image.size == (451, 300)
    assert upload_prediction(default_model, result.png)[0] == BELL_PEPPER
    assert result.success and result.adversarial.index == BELL_PEPPER
    assert result.adversarial_target is not None and result.adversarial_target.index == BELL_PEPPER
    assert result.linf <= 8


@pytest.mark.parametrize("epsilon", [0.25, 0.5, 0.999])
def test_epsilon_below_one_level_is_refused(
    default_model: LoadedModel, chelsea: Image.Image, epsilon: float
) -> None:
    with pytest.raises(InvalidParamsError, match="below one 8-bit level"):
        adversarial_image(default_model, chelsea, {"epsilon": epsilon})


@pytest.mark.parametrize(
    ("interpolation", "resample"),
    [
        ("bicubic", Image.Resampling.BICUBIC),
        ("bilinear", Image.Resampling.BILINEAR),
        ("nearest", Image.Resampling.NEAREST),
    ],
)
@pytest.mark.parametrize("size", [(300, 451), (64, 96), (224, 100)])
def test_torch_resize_is_pillows(
    chelsea: Image.Image, interpolation: str, resample: Image.Resampling, size: tuple[int, int]
) -> None:
    photo = chelsea.resize((size[1], size[0]))
    expected = np.asarray(photo.resize((224, 224), resample=resample), dtype=np.float64)
    pixels = torch.from_numpy(np.asarray(photo).copy()).permute(2, 0, 1)[None].float() / 255
    ours = resize_like_pil(pixels, (224, 224), interpolation)[0].permute(1, 2, 0).numpy() * 255
    difference = np.abs(ours - expected)
    assert difference.max() <= 1 + 1e-3  # Pillow's fixed-point weights: one level at most
    assert (difference > 0.5).mean() < (1e-9 if interpolation == "nearest" else 0.05)


def test_rounding_passes_the_gradient_straight_through() -> None:
    pixels = torch.tensor([0.1, 0.5, 0.9], requires_grad=True)
    rounded = quantize(pixels)
    torch.testing.assert_close(rounded, torch.floor(pixels * 255 + 0.5).detach() / 255)
    (rounded * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert pixels.grad is not None
    torch.testing.assert_close(pixels.grad, torch.tensor([1.0, 2.0, 3.0]))
