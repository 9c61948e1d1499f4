"""Normalization and colour bins give the bytes of their plain formulas (the rest of the
pixel path against today's: tests/test_pixel_path.py)."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlens import render


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


@pytest.mark.parametrize("size", [1, 2, 7, 1000, 70_001, 400_000])
@pytest.mark.parametrize("q", [0.0, 12.5, 50.0, 99.5, 99.99, 100.0])
def test_percentile_is_numpys_to_the_bit(size: int, q: float) -> None:
    """The same float as np.percentile: on smooth, noisy, tied, half-zero (a ReLU'd map) and
    constant values, large enough for the sampled selection or not."""
    rng = np.random.default_rng(size)
    smooth = render.resize_map(rng.random((7, 7), dtype=np.float32), (1, size))[0]
    noisy = (rng.standard_normal(size) * 1e3).astype(np.float32)
    half_zero = np.maximum(noisy, 0)
    half_zero[: size // 2] = 0
    constant = np.full(size, 3.25, np.float32)
    for values in (smooth, noisy, np.round(noisy / 100), half_zero, constant):
        assert render.percentile(values, q) == float(np.percentile(values, q))


@pytest.mark.parametrize("kind", ["positive", "signed", "unexplained", "zeros", "constant"])
def test_map_bins_are_the_bins_of_the_normalized_map(kind: str) -> None:
    rng = np.random.default_rng(5)
    raw = rng.standard_normal((60, 90)).astype(np.float32)
    raw = {
        "positive": np.abs(raw),
        "signed": raw,
        "unexplained": np.where(raw > 1.5, np.nan, np.abs(raw)).astype(np.float32),
        "zeros": np.zeros_like(raw),
        "constant": np.full_like(raw, -2.0),
    }[kind]
    before = raw.copy()
    bins = render.map_bins(raw)
    np.testing.assert_array_equal(bins, render.colour_bins(render.normalize_map(raw)))
    np.testing.assert_array_equal(raw, before)  # the map is left as it was
