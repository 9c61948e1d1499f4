"""Adversarial images a user can save: 8-bit pixels that still fool the model once uploaded.

The attack variable is the returned image itself, at the size it is returned (the photo's
own, or the model's input). Each step's forward is what an upload of that image goes
through: 8-bit rounding, Pillow's resize to the input size (rounded again), normalization;
gradients pass the rounding straight through. After the last step the pixels are projected
onto the 8-bit lattice inside the ball (whole levels, at most floor(epsilon) from the
original), and the prediction reported is the one of the PNG, decoded and preprocessed
again as an upload. An epsilon below one level (1/255) cannot be stored and is refused.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from cnnlens.api.models import ClassScore
from cnnlens.errors import InvalidParamsError
from cnnlens.imageio import ImageSource, load_image
from cnnlens.methods._realizable import (
    LEVELS,
    encode,
    png_roundtrip_probabilities,
    quantize,
    resize_like_pil,
)
from cnnlens.methods.adversarial import (
    AdversarialParams,
    attack_labels,
    projected_gradient_attack,
)
from cnnlens.methods.base import MethodParams, check_head_support, get_method, parse_params
from cnnlens.models.hooks import hook_session
from cnnlens.models.loaded import LoadedModel
from cnnlens.models.preprocess import Preprocessing
from cnnlens.targets import Classes, class_indices

MIN_SAVED_EPSILON = 1.0  # one 8-bit level, 0-255 units


@dataclass
class AdversarialImage:
    """One saved adversarial image and the predictions before and after, as an upload."""

    image: Image.Image = field(repr=False)  # 8-bit RGB at the returned size
    png: bytes = field(repr=False)  # `image` as PNG: the bytes that were checked
    output_size: Literal["image", "model"]  # the photo's own size or the model's input size
    epsilon: float  # the requested budget, 0-255 units
    epsilon_levels: int  # the budget an 8-bit image realizes: floor(epsilon) levels
    linf: int  # the largest pixel change of `image`, in levels
    perturbation: np.ndarray = field(repr=False)  # (H, W, 3) int16, levels, image - original
    target: ClassScore  # the class explained / pushed away from, on the original
    target_after: ClassScore  # the same class on the returned image
    original: ClassScore  # top-1 on the original
    adversarial: ClassScore  # top-1 on the returned image, decoded and preprocessed again
    adversarial_target: ClassScore | None  # a targeted attack's goal, on the returned image
    success: bool  # the goal is reached, or the explained class is no longer top-1

    @property
    def width(self) -> int:
        return self.image.width

    @property
    def height(self) -> int:
        return self.image.height

    def perturbation_image(self) -> Image.Image:
        """Gray where nothing moved; the full colour swing is +-epsilon levels."""
        unit = 0.5 + self.perturbation.astype(np.float32) / (2 * max(self.epsilon_levels, 1))
        return Image.fromarray((np.clip(unit, 0, 1) * 255 + 0.5).astype(np.uint8))

    def summary(self) -> dict[str, Any]:
        """JSON-ready fields (no image bytes)."""

        def score(value: ClassScore | None) -> dict[str, Any] | None:
            return None if value is None else value.model_dump()

        return {
            "output_size": self.output_size,
            "output": {"width": self.width, "height": self.height},
            "epsilon": self.epsilon,
            "epsilon_levels": self.epsilon_levels,
            "linf": float(self.linf),
            "target": score(self.target),
            "target_after": score(self.target_after),
            "original": score(self.original),
            "adversarial": score(self.adversarial),
            "adversarial_target": score(self.adversarial_target),
            "success": self.success,
        }


def adversarial_image(
    model: LoadedModel,
    image: ImageSource,
    params: MethodParams | dict[str, Any] | None = None,
    target: int | str | None = None,
) -> AdversarialImage:
    """FGSM / PGD on one photo; the result is the 8-bit image and its re-checked prediction.

    Args:
        model: the model to fool.
        image: a path, bytes, PIL image or array.
        params: `AdversarialParams` or its dict (`epsilon` >= 1, `output_size`, ...).
        target: the class to push away from (index or label); default the top-1.
    """
    targets = None if target is None else [target]
    (result,) = adversarial_images(model, [load_image(image)], params, targets)
    return result


def adversarial_images(
    model: LoadedModel,
    images: Sequence[Image.Image],
    params: MethodParams | dict[str, Any] | None = None,
    targets: Classes = None,
) -> list[AdversarialImage]:
    """`adversarial_image` for several photos of any sizes, with batched model passes."""
    check_head_support(get_method("adversarial"), model.head)
    parsed = saved_output_params(params)
    prep = model.preprocessing
    device = model.device
    originals = [_original_levels(model, image, parsed.output_size).to(device) for image in images]
    budget = float(math.floor(parsed.epsilon))
    start = [levels / LEVELS for levels in originals]
    low = [(levels - budget).clamp(min=0) / LEVELS for levels in originals]
    high = [(levels + budget).clamp(max=LEVELS) / LEVELS for levels in originals]
    to_input = functools.partial(_to_input, prep)
    uploads = torch.cat([prep(image) for image in images]).to(device)  # the photos as uploads
    with hook_session(model.module) as session, torch.enable_grad():
        with torch.no_grad():
            logits = session.forward(uploads, input_grad=False)
        num_classes = logits.shape[1]
        explained = class_indices(targets, logits, model.categories, len(images))
        labels, direction = attack_labels(
            parsed, explained.to(device), model.categories, num_classes
        )
        final = projected_gradient_attack(
            session, to_input, start, low, high, labels, direction, parsed
        )
    before = logits.detach().float().softmax(dim=1).cpu()
    saved = [
        encode(_on_lattice(pixels, levels, budget)[0])
        for pixels, levels in zip(final, originals, strict=True)
    ]
    after = png_roundtrip_probabilities(model, [png for _, png in saved])
    results = []
    for row, ((picture, png), levels) in enumerate(zip(saved, originals, strict=True)):
        stored = torch.from_numpy(np.asarray(picture, dtype=np.int16)).permute(2, 0, 1)
        change = stored - levels[0].round().to(torch.int16).cpu()
        label, goal = int(explained[row]), int(labels[row])
        reached = int(after[row].argmax())
        results.append(
            AdversarialImage(
                image=picture,
                png=png,
                output_size=parsed.output_size,
                epsilon=parsed.epsilon,
                epsilon_levels=int(budget),
                linf=int(change.abs().max()),
                perturbation=change.permute(1, 2, 0).numpy(),
                target=_score(model, label, before[row]),
                target_after=_score(model, label, after[row]),
                original=_score(model, int(before[row].argmax()), before[row]),
                adversarial=_score(model, reached, after[row]),
                adversarial_target=None if direction > 0 else _score(model, goal, after[row]),
                success=reached == goal if direction < 0 else reached != label,
            )
        )
    return results


def _to_input(prep: Preprocessing, pixels: Sequence[torch.Tensor]) -> torch.Tensor:
    """The attacked pixels of each photo, quantized, as the model's input batch."""
    return prep.normalize(torch.cat([_model_view(prep, quantize(p)) for p in pixels]))


def saved_output_params(params: MethodParams | dict[str, Any] | None) -> AdversarialParams:
    """The method's params, refusing a budget an 8-bit image cannot hold (a clear 422)."""
    parsed = parse_params(get_method("adversarial"), params)
    assert isinstance(parsed, AdversarialParams)
    if parsed.epsilon < MIN_SAVED_EPSILON:
        raise InvalidParamsError(
            f"adversarial: epsilon {parsed.epsilon:g} is below one 8-bit level; a saved image "
            "moves its pixels by whole levels (0-255), so an epsilon under 1 cannot be stored "
            "(rounding would undo it): use epsilon >= 1"
        )
    return parsed


def _model_view(prep: Preprocessing, pixels: torch.Tensor) -> torch.Tensor:
    """(1, 3, H, W) pixels in [0, 1] -> the input-size view the preprocessing takes of them
    (resized whole, or resized and center-cropped), differentiably."""
    frame = prep.framing(pixels.shape[-1], pixels.shape[-2])
    size = (frame.resized_height, frame.resized_width)
    resized = resize_like_pil(pixels, size, prep.interpolation)
    rows = slice(frame.top, frame.top + frame.input_height)
    return resized[..., rows, frame.left : frame.left + frame.input_width]


def _original_levels(
    model: LoadedModel, image: Image.Image, output_size: Literal["image", "model"]
) -> torch.Tensor:
    """(1, 3, H, W) float whole levels of the image the attack starts from."""
    rgb = image.convert("RGB")
    if output_size == "model":  # the image the model's preprocessing makes, 8-bit
        height, width = model.input_size
        rgb = Image.fromarray(
            (model.preprocessing.denormalize(model.preprocessing(rgb))[0] * LEVELS)
            .round()
            .clamp(0, LEVELS)
            .to(torch.uint8)
            .permute(1, 2, 0)
            .numpy()
        )
        assert rgb.size == (width, height)
    array = np.asarray(rgb, dtype=np.float32)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).unsqueeze(0)


def _on_lattice(pixels: torch.Tensor, levels: torch.Tensor, budget: float) -> torch.Tensor:
    """Whole levels within `budget` of the original and inside 0..255."""
    rounded = torch.floor(pixels.detach() * LEVELS + 0.5)
    low, high = (levels - budget).clamp(min=0), (levels + budget).clamp(max=LEVELS)
    return torch.maximum(torch.minimum(rounded, high), low)


def _score(model: LoadedModel, index: int, probabilities: torch.Tensor) -> ClassScore:
    return ClassScore(
        index=index, label=model.label_of(index), probability=float(probabilities[index])
    )
