"""The response-size limit: pixels x explanations x outputs, refused before rendering."""

from __future__ import annotations

import pytest

from cnnlens.errors import ResponseTooLargeError
from cnnlens.response_size import check_response_size, response_size

MB = 1_000_000
LIMITS = {"max_bytes": 256 * 1024 * 1024, "max_rendered_pixels": 64_000_000}


def test_sizes_by_hand() -> None:
    """4000 x 4000, 8 explanations: arrays of float32 in base64 = 16e6 * 4 * 4/3 each."""
    body, rendered = response_size(4000, 4000, 8, ["array"])
    assert rendered == 0
    assert body == pytest.approx(8 * 16e6 * 4 * 4 / 3)  # 683 MB: 8 array targets, 16 MP
    body, rendered = response_size(4000, 4000, 1, ["overlay", "heatmap"])
    assert rendered == 2 * 16_000_000
    assert body == pytest.approx(2 * 16e6 * 3 * 4 / 3)


def test_a_683_mb_array_response_is_refused_with_the_targets_that_fit() -> None:
    with pytest.raises(ResponseTooLargeError) as caught:
        check_response_size(4000, 4000, 8, 1, ["array"], **LIMITS)
    error = caught.value
    assert (error.status, error.code) == (422, "response_too_large")
    assert "683 MB" in error.message and "at most 3 targets" in error.message
    check_response_size(4000, 4000, 3, 1, ["array"], **LIMITS)


def test_sixteen_overlays_of_sixteen_megapixels_are_refused_for_rendering() -> None:
    with pytest.raises(ResponseTooLargeError, match="megapixel") as caught:
        check_response_size(4000, 4000, 16, 1, ["overlay", "heatmap"], **LIMITS)
    assert "at most 2 targets" in caught.value.message
    check_response_size(4000, 4000, 2, 1, ["overlay", "heatmap"], **LIMITS)


def test_an_ordinary_response_passes() -> None:
    check_response_size(451, 300, 16, 3, ["overlay", "heatmap", "array"], **LIMITS)
