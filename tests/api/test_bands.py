"""Row bands: every row is worked exactly once, on the pool's threads, and errors come back."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from cnnlens.api import bands


@pytest.fixture
def three_small_bands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bands, "BAND_ELEMENTS", 10)
    monkeypatch.setattr(bands, "workers", lambda: 3)


@pytest.mark.parametrize("rows", [0, 1, 2, 7, 30])
def test_each_row_is_written_once_from_its_own_rows(three_small_bands: None, rows: int) -> None:
    source = np.arange(rows * 5, dtype=np.int64).reshape(rows, 5)
    visits = np.zeros(rows, np.int64)

    def kernel(part: np.ndarray, out: np.ndarray) -> None:
        out[:] = part * 2
        first = int(part[0, 0]) // 5 if len(part) else 0
        visits[first : first + len(part)] += 1

    out = bands.in_row_bands(kernel, np.full((rows, 5), -1, np.int64), source)
    np.testing.assert_array_equal(out, source * 2)
    np.testing.assert_array_equal(visits, np.ones(rows, np.int64))


def test_large_arrays_go_to_the_pool_and_small_ones_stay(three_small_bands: None) -> None:
    threads: list[str] = []

    def kernel(out: np.ndarray) -> None:
        threads.append(threading.current_thread().name)
        out[:] = 1

    bands.in_row_bands(kernel, np.zeros((30, 1)))  # 30 elements: three bands of 10
    assert len(threads) == 3 and all(name.startswith("cnnlens-bands") for name in threads)
    threads.clear()
    bands.in_row_bands(kernel, np.zeros((3, 3)))  # under two bands' worth: one piece, here
    assert threads == [threading.current_thread().name]


def test_a_band_error_reaches_the_caller(three_small_bands: None) -> None:
    def kernel(rows: np.ndarray, out: np.ndarray) -> None:
        if rows[0, 0] == 10:  # the middle band only
            raise ValueError("band failed")

    with pytest.raises(ValueError, match="band failed"):
        bands.in_row_bands(kernel, np.zeros((30, 1)), np.arange(30).reshape(30, 1))


def test_band_count_follows_size_and_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bands, "workers", lambda: 4)
    assert bands.band_count(bands.BAND_ELEMENTS) == 1  # under two bands' worth
    assert bands.band_count(3 * bands.BAND_ELEMENTS) == 3
    assert bands.band_count(100 * bands.BAND_ELEMENTS) == 4
    assert bands.band_count(100, band_elements=10) == 4
