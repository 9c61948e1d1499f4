"""On a CPU, run_methods takes the gradient methods' shared pass in heap-sized passes
(methods/passes.py) and joins them: the same maps, extras, logits and targets as one pass,
and as one image at a time."""

from __future__ import annotations

import pytest
import torch

import cnnlens.methods.run as run_module
from cnnlens.errors import TargetError
from cnnlens.methods.base import MethodOutput, join_outputs, row_extras
from cnnlens.methods.run import run_methods
from cnnlens.models import LoadedModel
from tests.audit.tiny_model import tiny_loaded
from tests.methods.counting import counting

GRADIENT_METHODS = [("grad_cam", {}), ("saliency", {}), ("guided_backprop", {}), ("cam", {})]


@pytest.fixture
def passes_of_three(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_module, "rows_per_pass", lambda inventory, device: 3)


def _batch(loaded: LoadedModel, rows: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(3)
    return torch.randn((rows, 3, *loaded.input_size), generator=generator)


def _traced(loaded: LoadedModel) -> LoadedModel:
    """The model with its layer inventory traced (a one-row forward of its own)."""
    loaded.layers  # noqa: B018
    return loaded


def test_passes_give_the_one_pass_result(
    monkeypatch: pytest.MonkeyPatch, passes_of_three: None
) -> None:
    loaded = _traced(tiny_loaded())
    x = _batch(loaded, 8)
    with counting(loaded.module) as split:
        in_passes = run_methods(loaded, x, GRADIENT_METHODS)
    assert split.forward_batches == [3, 3, 2]
    monkeypatch.setattr(run_module, "rows_per_pass", lambda inventory, device: None)
    with counting(loaded.module) as whole:
        at_once = run_methods(loaded, x, GRADIENT_METHODS)
    assert whole.forward_batches == [8]
    torch.testing.assert_close(in_passes.logits, at_once.logits)
    assert torch.equal(in_passes.targets, at_once.targets)
    for name, _ in GRADIENT_METHODS:
        torch.testing.assert_close(in_passes.outputs[name].map, at_once.outputs[name].map)
    low = "low_resolution"
    torch.testing.assert_close(
        in_passes.outputs["grad_cam"].extras[low], at_once.outputs["grad_cam"].extras[low]
    )
    assert set(in_passes.elapsed_ms) == {name for name, _ in GRADIENT_METHODS}


def test_the_default_model_in_heap_sized_passes_equals_one_image_at_a_time(
    default_model: LoadedModel, chelsea_batch: torch.Tensor, coffee_batch: torch.Tensor
) -> None:
    """efficientnet_lite0 at 224 px takes 6 images a pass on a CPU: 8 images make two."""
    x = torch.cat([chelsea_batch, coffee_batch] * 4)
    _traced(default_model)
    with counting(default_model.module) as passes:
        together = run_methods(default_model, x, [("grad_cam", {}), ("saliency", {})])
    assert passes.forward_batches == [6, 2]
    for row in range(len(x)):
        alone = run_methods(default_model, x[row : row + 1], [("grad_cam", {}), ("saliency", {})])
        for name in ("grad_cam", "saliency"):
            torch.testing.assert_close(
                together.outputs[name].map[row : row + 1], alone.outputs[name].map
            )


def test_targets_of_each_row_follow_it_into_its_pass(passes_of_three: None) -> None:
    loaded = tiny_loaded()
    x = _batch(loaded, 7)
    wanted = [0, 1, 2, 3, "red", "green", 3]
    result = run_methods(loaded, x, [("saliency", {})], target=wanted)
    assert result.targets.tolist() == [0, 1, 2, 3, 0, 1, 3]
    as_tensor = run_methods(loaded, x, [("saliency", {})], target=torch.tensor([2] * 7))
    assert as_tensor.targets.tolist() == [2] * 7
    one_for_all = run_methods(loaded, x, [("saliency", {})], target="blue")
    assert one_for_all.targets.tolist() == [2] * 7


def test_a_wrong_number_of_targets_is_refused_before_any_pass(passes_of_three: None) -> None:
    loaded = _traced(tiny_loaded())
    with counting(loaded.module) as passes, pytest.raises(TargetError, match="3 targets for"):
        run_methods(loaded, _batch(loaded, 7), [("saliency", {})], target=[0, 1, 2])
    assert passes.forward_batches == []


def test_join_outputs_joins_rows_and_keeps_what_is_shared() -> None:
    parts = [
        MethodOutput(torch.full((2, 1, 4, 4), float(i)), {
            "per_row": torch.arange(2) + 10 * i, "names": [f"a{i}", f"b{i}"],
            "engine": "incremental", "scalar": torch.tensor(1.5),
        })
        for i in range(2)
    ]  # fmt: skip
    joined = join_outputs(parts)
    assert joined.map.shape == (4, 1, 4, 4) and joined.map[2:].eq(1).all()
    assert joined.extras["per_row"].tolist() == [0, 1, 10, 11]
    assert joined.extras["names"] == ["a0", "b0", "a1", "b1"]
    assert joined.extras["engine"] == "incremental"
    assert float(joined.extras["scalar"]) == 1.5
    row = row_extras(joined.extras, 2, 4)  # the inverse, for one row
    assert int(row["per_row"]) == 10 and row["names"] == "a1" and row["engine"] == "incremental"
