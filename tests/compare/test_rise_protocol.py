"""`baseline="rise"` is the RISE authors' evaluation protocol; `baseline="blur"` keeps the
former numbers.

The reference below is written here from the authors' published evaluation code (Petsiuk et
al. 2018, `evaluation.py` and `Evaluation.ipynb` of their repository), not from cnnlens:
`gkern(11, 5)` smooths an impulse with scipy's gaussian_filter; insertion starts from
`conv2d(img, kern, padding=5)` (zero padding), deletion goes to zeros; `step` pixels are
switched a step, in order of decreasing saliency; the curve is the softmax probability of
the class predicted on the clean image; `auc` is the trapezoid rule. Only the order of tied
pixels is cnnlens's documented one (a seeded random key), since the authors' `np.argsort`
leaves ties to numpy's sort.
"""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.ndimage import gaussian_filter

from cnnlens.compare import CompareOptions, Comparison, compare
from cnnlens.compare.faithfulness import (
    perturbation_counts,
    perturbation_curves,
    rise_blur,
    substrate_image,
)
from cnnlens.models import LoadedModel

STEPS = 8  # 6272 pixels a step at 224 x 224: the reference's step
METHODS = ("grad_cam", "saliency")
PHOTOS = ("chelsea", "coffee", "rocket")


def gkern(klen: int, nsig: float) -> torch.Tensor:
    """The authors' kernel: (3, 3, klen, klen), the smoothed impulse on the diagonal."""
    impulse = np.zeros((klen, klen))
    impulse[klen // 2, klen // 2] = 1
    k = gaussian_filter(impulse, nsig)
    kern = np.zeros((3, 3, klen, klen))
    kern[0, 0] = kern[1, 1] = kern[2, 2] = k
    return torch.from_numpy(kern.astype("float32"))


def auc(arr: np.ndarray) -> float:
    return float((arr.sum() - arr[0] / 2 - arr[-1] / 2) / (arr.shape[0] - 1))


def salient_order(explanation: np.ndarray, seed: int = 0) -> np.ndarray:
    """Pixels by decreasing saliency, ties by cnnlens's documented seeded key."""
    flat = explanation.reshape(-1).astype(np.float64)
    return np.lexsort((np.random.default_rng(seed).random(flat.size), -flat))


def causal_metric(
    model: torch.nn.Module, img: torch.Tensor, explanation: np.ndarray, mode: str, step: int
) -> float:
    """The authors' CausalMetric.single_run, its steps scored in small batches at the end."""
    kern = gkern(11, 5)
    hw = img.shape[-2] * img.shape[-1]
    with torch.no_grad():
        c = int(model(img).argmax(1))
        blurred = F.conv2d(img, kern, padding=11 // 2)
    n_steps = (hw + step - 1) // step
    start, finish = (img.clone(), torch.zeros_like(img)) if mode == "del" else (blurred, img)
    order = salient_order(explanation)
    states = []
    for i in range(n_steps + 1):
        states.append(start.clone())
        if i < n_steps:
            coords = torch.from_numpy(order[step * i : step * (i + 1)].copy())
            start.view(1, 3, hw)[0, :, coords] = finish.reshape(1, 3, hw)[0, :, coords]
    with torch.no_grad():
        scores = torch.cat([model(batch).softmax(1)[:, c] for batch in torch.cat(states).split(6)])
    return auc(scores.double().numpy())


def _2d(raw: np.ndarray) -> np.ndarray:
    return raw[0] if raw.shape[0] == 1 else np.abs(raw).max(axis=0)


@pytest.fixture(scope="module")
def photos() -> dict[str, Image.Image]:
    return {name: Image.fromarray(getattr(skimage.data, name)()) for name in PHOTOS}


@pytest.fixture(scope="module")
def comparisons(default_model: LoadedModel, photos: dict[str, Image.Image]) -> Comparison:
    options = CompareOptions(steps=STEPS, scores=["deletion", "insertion"], baseline="rise")
    return compare(default_model, list(photos.values()), list(METHODS), options=options)


def test_rise_equals_the_authors_protocol_on_three_photos(
    default_model: LoadedModel, photos: dict[str, Image.Image], comparisons: Comparison
) -> None:
    step = 224 * 224 // STEPS
    for picture, item in zip(photos.values(), comparisons.images, strict=True):
        img = default_model.preprocessing(picture)  # (1, 3, 224, 224)
        for method in METHODS:
            explanation = _2d(item.maps[method])
            deletion = causal_metric(default_model.module, img, explanation, "del", step)
            insertion = causal_metric(default_model.module, img, explanation, "ins", step)
            scores = item.scores[method]
            assert scores["deletion"] == pytest.approx(deletion, abs=0.005), (item.name, method)
            assert scores["insertion"] == pytest.approx(insertion, abs=0.005), (item.name, method)


def test_rise_records_its_protocol(comparisons: Comparison) -> None:
    record = comparisons.to_json()["protocol"]
    assert record["baseline"] == "rise"
    assert (record["deletion"], record["insertion"]) == ("zeros", "rise_blur")
    assert record["kernel"] == {"size": 11, "sigma": 5.0, "padding": "zeros"}
    assert (record["steps"], record["points"], record["seed"]) == (STEPS, STEPS + 1, 0)


def test_steps_224_is_the_authors_schedule_at_224_pixels() -> None:
    hw, step = 224 * 224, 224
    n_steps = (hw + step - 1) // step
    theirs = [min(step * i, hw) for i in range(n_steps + 1)]
    assert perturbation_counts(hw, 224) == theirs
    assert len(theirs) == 225


def test_the_insertion_canvas_is_the_authors_blur() -> None:
    x = torch.randn(1, 3, 40, 30, generator=torch.Generator().manual_seed(0))
    expected = F.conv2d(x, gkern(11, 5), padding=5)
    assert torch.allclose(rise_blur(x), expected, atol=1e-6)


def test_blur_keeps_the_former_curves(
    default_model: LoadedModel, chelsea: Image.Image, chelsea_batch: torch.Tensor
) -> None:
    """The "blur" baseline: both ways a +-3 sigma Gaussian with reflected borders (scipy's
    "mirror"), and the AUCs measured before the RISE protocol changed (efficientnet_lite0,
    chelsea, 16 steps, seed 0)."""
    options = CompareOptions(steps=16, scores=["deletion", "insertion"], baseline="blur")
    scores = compare(default_model, chelsea, list(METHODS), options=options).images[0].scores
    former = {
        "grad_cam": (0.5563188488595188, 0.6098650246858597),
        "saliency": (0.3973369032028131, 0.28153875685529783),
    }
    for method, (deletion, insertion) in former.items():
        assert scores[method]["deletion"] == pytest.approx(deletion, abs=1e-6)
        assert scores[method]["insertion"] == pytest.approx(insertion, abs=1e-6)
    # the canvas itself: scipy's blur with the same kernel span and border rule, any sigma
    for sigma in (5.0, 2.0):
        ours = substrate_image(chelsea_batch, "blur", sigma)
        assert torch.allclose(ours, _scipy_blur(chelsea_batch, sigma), atol=1e-5)
    curves = perturbation_curves(
        default_model.module, chelsea_batch, np.ones((224, 224)), 285, steps=2,
        kinds=("insertion",), baseline="blur", blur_sigma=2.0,
    )  # fmt: skip
    with torch.no_grad():
        start = default_model.module(_scipy_blur(chelsea_batch, 2.0)).softmax(1)[0, 285]
    assert curves.insertion is not None
    assert curves.insertion[0] == pytest.approx(float(start), abs=1e-5)


def _scipy_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """+-3 sigma Gaussian per channel, borders reflected without repeating the edge."""
    channels = [gaussian_filter(c, sigma, mode="mirror", truncate=3.0) for c in x[0].numpy()]
    return torch.from_numpy(np.stack(channels)[None])
