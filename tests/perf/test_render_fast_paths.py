"""The 12-megapixel fast paths of rendering give the same bytes as the plain float formulas."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cnnlens import render
from cnnlens.api import bands


@pytest.fixture(autouse=True, params=["whole", "banded"])
def row_bands(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test runs twice: arrays in one piece, and in bands of 50 elements on 3 threads."""
    if request.param == "banded":
        monkeypatch.setattr(bands, "BAND_ELEMENTS", 50)
        monkeypatch.setattr(bands, "workers", lambda: 3)


def _float_blend(base: np.ndarray, heat: np.ndarray, alpha: float) -> np.ndarray:
    blended = base.astype(np.float32) * np.float32(1 - alpha) + np.float32(alpha) * heat
    return np.clip(blended + np.float32(0.5), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("alpha", [0.5, 0.3])  # 0.5: the uint8 path; others: the float one
def test_overlay_equals_the_float_blend_byte_for_byte(alpha: float) -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    raw = rng.random((40, 60), dtype=np.float32)
    heat = render.colorize(render.normalize_map(raw))
    blended = np.asarray(render.overlay(Image.fromarray(base), raw, alpha=alpha))
    assert blended.dtype == np.uint8
    np.testing.assert_array_equal(blended, _float_blend(base, heat, alpha))


def test_rounded_mean_of_every_pair_of_bytes() -> None:
    """Odd sums (the rounding case) and 255 + 255 included."""
    pairs = np.array(np.meshgrid(np.arange(256), np.arange(256)), dtype=np.uint8).reshape(2, -1)
    mean = render._rounded_mean(pairs[0], pairs[1])
    np.testing.assert_array_equal(mean, (pairs[0].astype(int) + pairs[1] + 1) // 2)


@pytest.mark.parametrize("signed", [False, True])
def test_normalize_map_equals_the_formula_and_leaves_the_input_alone(signed: bool) -> None:
    rng = np.random.default_rng(2)
    raw = rng.standard_normal((50, 70)).astype(np.float32)
    raw = raw if signed else np.abs(raw)
    raw[3, 4] = np.nan
    before = raw.copy()
    unit = render.normalize_map(raw)
    clean = np.nan_to_num(before, nan=0.0)
    explained = before[np.isfinite(before)]  # NaN (not explained) takes no part in the scale
    if signed:
        top = float(np.percentile(np.abs(explained), 99.5))
        expected = np.clip(0.5 + clean / (2 * top), 0, 1)
    else:
        expected = np.clip(clean / float(np.percentile(explained, 99.5)), 0, 1)
    np.testing.assert_array_equal(unit, expected.astype(np.float32))
    np.testing.assert_array_equal(np.isnan(raw), np.isnan(before))  # the input is not changed
    assert unit[3, 4] == (0.5 if signed else 0.0)


def test_colorize_equals_the_plain_table_lookup() -> None:
    unit = np.linspace(-0.1, 1.1, 301, dtype=np.float32).reshape(7, 43)
    table = render._lookup_table("viridis")
    expected = table[np.clip(unit * 255.0 + 0.5, 0.0, 255.0).astype(np.uint8)]  # the plain form
    np.testing.assert_array_equal(render.colorize(unit, "viridis"), expected)


def test_colour_bins_are_the_entries_colorize_looks_up() -> None:
    unit = np.linspace(-0.1, 1.1, 21 * 101, dtype=np.float32).reshape(21, 101)
    bins = render.colour_bins(unit)
    assert bins.dtype == np.uint8 and bins.shape == unit.shape
    np.testing.assert_array_equal(render._lookup_table("jet")[bins], render.colorize(unit))


@pytest.mark.parametrize("cmap", ["jet", "viridis", "gray"])
def test_a_palette_heatmap_has_the_colours_of_the_rgb_one(cmap: str) -> None:
    unit = render.normalize_map(np.random.default_rng(4).random((30, 50), dtype=np.float32))
    palette = render.palette_heatmap(render.colour_bins(unit), cmap)
    assert palette.mode == "P"
    np.testing.assert_array_equal(np.asarray(palette.convert("RGB")), render.colorize(unit, cmap))
