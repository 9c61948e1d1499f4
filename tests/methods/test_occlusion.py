"""Occlusion: hand-computed values on the tiny CNN, captum agreement, params, batching."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from cnnlens.errors import InvalidParamsError
from cnnlens.incremental.windows import WindowGrid, window_starts
from cnnlens.methods import attribute, run_methods
from cnnlens.models import LoadedModel
from cnnlens.models.preprocess import Preprocessing
from tests import tiny
from tests.conftest import EGYPTIAN_CAT, pearson
from tests.methods.test_contract import small_cnn

ENGINES = ["dense", "incremental"]


def tiny_loss(x: np.ndarray, target: int) -> float:
    """-log softmax(FC mean_p relu(CONV x(p)) + b)[target], written out with numpy."""
    hidden = np.maximum(np.einsum("kc,chw->khw", tiny.CONV, x), 0).mean(axis=(1, 2))  # (K,)
    logits = tiny.FC @ hidden + tiny.FC_BIAS
    return float(np.log(np.exp(logits).sum()) - logits[target])


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("target", [0, 1])
def test_one_pixel_windows_by_hand(engine: str, target: int) -> None:
    """window 1: each pixel's value is the loss change when that pixel alone is zeroed."""
    expected = np.zeros((2, 2))
    for row in range(2):
        for col in range(2):
            occluded = tiny.INPUT.copy()
            occluded[:, row, col] = 0.0
            expected[row, col] = tiny_loss(occluded, target) - tiny_loss(tiny.INPUT, target)
    got = attribute(
        "occlusion",
        tiny.tiny_cnn(),
        tiny.tiny_input(),
        target=target,
        window=1,
        stride=1,
        fill="zero",
        engine=engine,
    )
    assert got.shape == (1, 1, 2, 2)
    np.testing.assert_allclose(got[0, 0].numpy(), expected, rtol=1e-5, atol=1e-6)
    assert np.abs(expected).min() > 1e-3  # every pixel matters: the check is not vacuous


@pytest.mark.parametrize("engine", ENGINES)
def test_overlapping_windows_are_averaged_by_hand(engine: str) -> None:
    """3x3 image, window 2, stride 1: four windows; each pixel averages the ones covering it;
    a gray fill level is converted into input space with the model's normalization."""
    torch.manual_seed(1)
    x = torch.randn(1, 3, 3, 3)
    level = 0.3
    prep = Preprocessing()
    gray = ((level - np.array(prep.mean)) / np.array(prep.std))[:, None, None]  # (3, 1, 1)
    image = x[0].numpy().astype(np.float64)
    clean = tiny_loss(image, 1)
    total, count = np.zeros((3, 3)), np.zeros((3, 3))
    for row in range(2):
        for col in range(2):
            occluded = image.copy()
            occluded[:, row : row + 2, col : col + 2] = gray
            total[row : row + 2, col : col + 2] += tiny_loss(occluded, 1) - clean
            count[row : row + 2, col : col + 2] += 1
    result = run_methods(
        tiny.tiny_cnn(),
        x,
        [("occlusion", {"window": 2, "stride": 1, "fill": level, "engine": engine})],
        target=1,
    ).outputs["occlusion"]
    np.testing.assert_allclose(result.map[0, 0].numpy(), total / count, rtol=1e-5, atol=1e-6)
    assert result.extras["window_loss_changes"].shape == (1, 2, 2)
    assert result.extras["engine"] == engine


def test_pixels_between_windows_get_zero() -> None:
    """stride 6 > window 4 leaves two-pixel gaps: never occluded, so no loss change."""
    grid = WindowGrid.of(10, 10, 4, 6)
    assert grid.row_starts == (0, 6)
    values = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    got = grid.average(values)[0, 0]
    assert float(got[0, 0]) == 1.0 and float(got[9, 9]) == 4.0 and float(got[0, 9]) == 2.0
    assert float(got[4:6].abs().sum()) == 0.0 and float(got[:, 4:6].abs().sum()) == 0.0
    model = small_cnn().eval()
    occlusion = attribute("occlusion", model, torch.randn(1, 3, 32, 32), window=4, stride=9)
    assert torch.isfinite(occlusion).all() and float(occlusion[0, 0, 5, 5]) == 0.0


def test_window_starts_cover_every_pixel() -> None:
    assert window_starts(32, 8, 8) == [0, 8, 16, 24]
    assert window_starts(30, 8, 8) == [0, 8, 16, 22]  # one more window flush with the edge
    assert window_starts(5, 5, 3) == [0]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"stride": 0}, "stride"),
        ({"window": 0}, "window"),
        ({"window": 33}, "must not exceed"),
        ({"batch_size": 0}, "batch_size"),
        ({"fill": "plaid"}, "fill"),
        ({"engine": "magic"}, "engine"),
        ({"threshold": 1.0}, "threshold"),
        ({"threshold": -0.1}, "threshold"),
        ({"coarse_stride": 0}, "coarse_stride"),
        ({"refine": 0.0}, "refine"),
    ],
)
def test_bad_params_are_clear_errors(params: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidParamsError, match=message):
        attribute("occlusion", small_cnn(), torch.randn(1, 3, 32, 32), **params)


class ConvBatchSizes(TorchFunctionMode):
    """Records the batch size of every conv2d call (dense forwards and incremental regions)."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def __torch_function__(
        self, func: Callable[..., Any], types: Any, args: Any = (), kwargs: Any = None
    ) -> Any:
        if func in (F.conv2d, torch.conv2d):
            self.sizes.append(int(args[0].shape[0]))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("engine", ENGINES)
def test_batch_size_bounds_the_copies_in_flight(engine: str) -> None:
    """49 windows in batches of 4: no call ever sees more than 4 copies; values unchanged."""
    model, x = small_cnn().eval(), torch.randn(2, 3, 32, 32)
    params: dict[str, Any] = {"window": 8, "stride": 4, "engine": engine}
    reference = attribute("occlusion", model, x, target=[3, 5], **params, batch_size=64)
    with ConvBatchSizes() as counter:
        got = attribute("occlusion", model, x, target=[3, 5], **params, batch_size=4)
    assert max(counter.sizes) == 4
    assert counter.sizes.count(4) >= 2 * (49 // 4)  # the batches really ran, for both images
    torch.testing.assert_close(got, reference, rtol=1e-5, atol=1e-6)


def test_several_targets_equal_one_at_a_time() -> None:
    model, x = small_cnn().eval(), torch.randn(3, 3, 32, 32)
    together = attribute("occlusion", model, x, target=[1, 4, 7], window=8, stride=8)
    for i, target in enumerate([1, 4, 7]):
        alone = attribute("occlusion", model, x[i : i + 1], target=target, window=8, stride=8)
        torch.testing.assert_close(together[i : i + 1], alone, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(together[0], together[1])


def test_agrees_with_captum_on_chelsea(
    default_model: LoadedModel, chelsea_batch: torch.Tensor
) -> None:
    """captum's Occlusion of log P(target) is the original minus the occluded value, i.e.
    the change of -log P(target): the same definition, so the maps must match."""
    from captum.attr import Occlusion as CaptumOcclusion

    module = default_model.module
    small = F.interpolate(chelsea_batch, size=(112, 112), mode="bilinear", antialias=True)
    ours = run_methods(
        default_model,
        small,
        [("occlusion", {"window": 16, "stride": 16, "fill": "mean"})],
        target=EGYPTIAN_CAT,
    ).outputs["occlusion"]
    assert ours.extras["engine"] == "incremental"
    gray = default_model.preprocessing.denormalize(small).mean()
    baseline = default_model.preprocessing.normalize(torch.full_like(small, float(gray)))

    def log_probability(x: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(module(x), dim=1)

    with torch.no_grad():
        reference = CaptumOcclusion(log_probability).attribute(
            small,
            sliding_window_shapes=(3, 16, 16),
            strides=(3, 16, 16),
            baselines=baseline,
            target=EGYPTIAN_CAT,
            perturbations_per_eval=16,
        )
    reference = reference.mean(dim=1, keepdim=True)  # same value on all 3 channels
    assert pearson(ours.map, reference) >= 0.98
    torch.testing.assert_close(ours.map, reference, rtol=1e-3, atol=1e-4)
    assert float(ours.map.max()) > 0.01  # occluding parts of the cat costs loss: not all zero
