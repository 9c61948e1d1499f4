"""Audits run the model in passes small enough to reuse the heap, with the same results."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import BaseModel

from cnnlens.audit import AuditConfig
from cnnlens.audit import analyze as analyze_module
from cnnlens.audit.analyze import AuditAnalyzer
from cnnlens.audit.inputs import AuditItem
from cnnlens.heap import MMAP_THRESHOLD_BYTES
from cnnlens.methods.passes import rows_per_pass
from cnnlens.methods.run import inventory_of
from cnnlens.models import LoadedModel
from tests.audit.tiny_model import SIDE, synthetic_png, tiny_loaded


def test_rows_per_pass_keeps_the_largest_activation_under_the_threshold(
    default_model: LoadedModel,
) -> None:
    inventory = default_model.layers
    # efficientnet_lite0 at 224 px: its largest activation is (96, 112, 112) float32 per image
    largest = max(
        torch.Size(layer.output_shape).numel() for layer in inventory.layers if layer.output_shape
    )
    assert largest == 96 * 112 * 112
    rows = rows_per_pass(inventory, "cpu")
    assert rows == MMAP_THRESHOLD_BYTES // (4 * largest) == 6
    assert rows_per_pass(inventory, "cuda") is None  # caching allocators take the whole batch
    assert rows_per_pass(inventory, "cpu", gradients=False) == MMAP_THRESHOLD_BYTES // 3 // (
        4 * largest
    )
    assert rows_per_pass(inventory, "cpu", gradients=False) == 2
    half = inventory_of(default_model, (112, 112))  # a quarter of the pixels: 4x the rows
    assert rows_per_pass(half, "cpu") == MMAP_THRESHOLD_BYTES // (4 * largest // 4)


@pytest.mark.parametrize("rows", [1, 3])
def test_passes_change_no_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rows: int
) -> None:
    model = tiny_loaded()
    items = []
    for index in range(7):
        path = tmp_path / f"{index}.png"
        path.write_bytes(synthetic_png(index))
        items.append(AuditItem(index, path.name, str(path)))
    config = AuditConfig(methods=("grad_cam", "saliency"), batch_size=7)
    whole = AuditAnalyzer(model, config)(items)
    calls: list[int] = []
    original = analyze_module.run_methods

    def counted(loaded, x, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(len(x))
        return original(loaded, x, *args, **kwargs)

    monkeypatch.setattr(analyze_module, "heap_rows", lambda *args, **kwargs: rows)
    monkeypatch.setattr(analyze_module, "run_methods", counted)
    passes = AuditAnalyzer(model, config)(items)
    assert calls == [rows] * (7 // rows) + ([7 % rows] if 7 % rows else [])
    assert Image.open(Path(items[0].path)).size == (SIDE, SIDE)
    for one, other in zip(whole, passes, strict=True):
        for key in ("predicted", "confidence", "flags", "predictions", "maps"):
            assert key in one.record
            _assert_close(one.record[key], other.record[key])
        assert one.overlay_pngs.keys() == other.overlay_pngs.keys() == {"grad_cam", "saliency"}
        for name, png in one.overlay_pngs.items():
            first, second = (
                np.asarray(Image.open(io.BytesIO(data)), dtype=int)
                for data in (png, other.overlay_pngs[name])
            )
            assert np.abs(first - second).max() <= 1
        # float16 class-mean maps: batch size changes the convolutions' last bits
        assert one.mean_map is not None and other.mean_map is not None
        half = np.dtype("float16")
        np.testing.assert_allclose(
            np.frombuffer(one.mean_map, half), np.frombuffer(other.mean_map, half), atol=2e-3
        )


def _assert_close(one: object, other: object) -> None:
    """Equal, floats within 1e-5: batch size changes the convolutions' last bits."""
    if isinstance(one, BaseModel) and isinstance(other, BaseModel):  # parts of a row
        _assert_close(one.model_dump(), other.model_dump())
    elif isinstance(one, dict) and isinstance(other, dict):
        assert one.keys() == other.keys()
        for key in one:
            _assert_close(one[key], other[key])
    elif isinstance(one, list | tuple) and isinstance(other, list | tuple):
        assert len(one) == len(other)
        for first, second in zip(one, other, strict=True):
            _assert_close(first, second)
    elif isinstance(one, float):
        assert other == pytest.approx(one, rel=1e-5, abs=1e-6)
    else:
        assert one == other


def test_perturbation_curves_take_heap_sized_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    from cnnlens.compare import faithfulness

    model = tiny_loaded().module
    x = torch.randn(1, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(0))
    saliency = torch.rand(SIDE, SIDE, generator=torch.Generator().manual_seed(1))
    seen: list[int] = []
    handle = model.register_forward_pre_hook(lambda _, args: seen.append(len(args[0])))
    monkeypatch.setattr(faithfulness, "heap_rows", lambda *args, **kwargs: None)
    whole = faithfulness.perturbation_curves(model, x, saliency, 1, steps=8, batch_size=16)
    assert seen == [9, 9]  # deletion, insertion: steps + 1 images each, one pass
    seen.clear()
    monkeypatch.setattr(faithfulness, "heap_rows", lambda *args, **kwargs: 4)
    passes = faithfulness.perturbation_curves(model, x, saliency, 1, steps=8, batch_size=16)
    handle.remove()
    assert seen == [4, 4, 1] * 2
    assert passes.deletion == pytest.approx(whole.deletion, abs=1e-6)
    assert passes.insertion == pytest.approx(whole.insertion, abs=1e-6)
