"""Rendering and image-level explain(): maps land on the original image's pixels."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
from PIL import Image

import cnnlens
from cnnlens import render
from cnnlens.models import LoadedModel, count_hooks
from tests.conftest import EGYPTIAN_CAT


def test_normalize_map_scales_and_keeps_zero_neutral() -> None:
    positive = np.array([[0.0, 1.0], [2.0, 4.0]])
    np.testing.assert_allclose(render.normalize_map(positive, clip_percentile=100), positive / 4)
    signed = np.array([[-2.0, 0.0], [1.0, 2.0]])
    np.testing.assert_allclose(
        render.normalize_map(signed, clip_percentile=100), [[0.0, 0.5], [0.75, 1.0]]
    )
    assert render.normalize_map(np.full((2, 2), np.nan)).max() == 0


def test_colormap_endpoints() -> None:
    colors = render.colorize(np.array([[0.0, 1.0]]), "gray")
    assert colors.tolist() == [[[0, 0, 0], [255, 255, 255]]]
    with pytest.raises(ValueError):
        render.colorize(np.zeros((1, 1)), "nope")


def test_overlay_and_png_sizes() -> None:
    image = Image.new("RGB", (50, 30), "gray")
    heat = np.zeros((7, 7))
    heat[3, 3] = 1.0
    blended = render.overlay(image, heat, alpha=0.5)
    assert blended.size == (50, 30)
    decoded = Image.open(io.BytesIO(render.to_png(blended)))
    assert decoded.size == (50, 30)
    sheet = render.grid([image, image, image], ["a", "b", "c"], columns=2, tile_size=64)
    # 50x30 tiles keep their aspect (64x38), with 6 px gaps between columns and rows.
    assert sheet.size == (2 * 64 + 6, 2 * (18 + 38) + 6)
    assert sheet.getpixel((64 + 3, 18 + 10)) == (255, 255, 255)  # the gap is white


def test_explain_maps_cover_the_original_image(
    default_model: LoadedModel, chelsea: Image.Image
) -> None:
    explanations = cnnlens.explain(
        default_model, chelsea, methods=["grad_cam", "guided_backprop"], target=[285, 282]
    )
    assert explanations.predictions[0].label == "Egyptian cat"
    assert [(e.method, e.target.index) for e in explanations if e.target] == [
        ("grad_cam", EGYPTIAN_CAT),
        ("grad_cam", 282),
        ("guided_backprop", EGYPTIAN_CAT),
        ("guided_backprop", 282),
    ]
    grad_cam = explanations[0]
    assert grad_cam.map.shape == (chelsea.height, chelsea.width)
    assert explanations[2].map.shape == (3, chelsea.height, chelsea.width)
    assert Image.open(io.BytesIO(grad_cam.overlay_png())).size == chelsea.size
    assert Image.open(io.BytesIO(grad_cam.heatmap_png())).size == chelsea.size
    assert grad_cam.layer == "bn2" and explanations[2].layer is None
    # The map on the image equals the model-resolution map resized to the image.
    low = cnnlens.attribute("grad_cam", default_model, default_model.preprocessing(chelsea))
    resized = render.resize_map(low[0], (chelsea.height, chelsea.width))[0]
    np.testing.assert_allclose(grad_cam.map, resized, rtol=1e-4, atol=1e-6)
    assert count_hooks(default_model.module) == 0


def test_explain_accepts_labels_and_rejects_unknown_ones(
    default_model: LoadedModel, coffee: Image.Image
) -> None:
    explanations = cnnlens.explain(default_model, np.asarray(coffee), target="cup")
    assert explanations[0].target is not None and explanations[0].target.label == "cup"
    with pytest.raises(cnnlens.CnnlensError, match="unknown class label"):
        cnnlens.explain(default_model, coffee, target="no such class")
    with pytest.raises(cnnlens.CnnlensError, match="out of range"):
        cnnlens.explain(default_model, coffee, target=1000)


def test_palette_heatmaps_have_the_rgb_heatmaps_colours(
    default_model: LoadedModel, chelsea: Image.Image
) -> None:
    """Heatmap PNGs travel as palette images (a third of the bytes to encode); decoded, they
    are the RGB heatmap pixel for pixel. A map with unexplained (NaN) pixels stays RGB: its
    grey is not in the colour table."""
    (grad_cam,) = cnnlens.explain(default_model, chelsea, methods=["grad_cam"])
    rgb = np.asarray(grad_cam.heatmap())
    palette = grad_cam.heatmap(palette=True)
    assert palette.mode == "P" and grad_cam.heatmap().mode == "RGB"
    np.testing.assert_array_equal(np.asarray(palette.convert("RGB")), rgb)
    decoded = Image.open(io.BytesIO(grad_cam.heatmap_png()))
    assert decoded.mode == "P"
    np.testing.assert_array_equal(np.asarray(decoded.convert("RGB")), rgb)
    unexplained = dataclasses.replace(grad_cam, map=grad_cam.map.copy())  # no caches
    unexplained.map[:5, :5] = np.nan
    assert unexplained.heatmap(palette=True).mode == "RGB"
    assert unexplained.heatmap(palette=True).getpixel((0, 0)) == render.UNEXPLAINED_GREY
