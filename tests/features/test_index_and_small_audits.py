"""The neighbour index (exact and IVF with its measured recall) and the dataset view of
audits too small for a map, or with it turned off."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cnnlens.audit import AuditConfig, run_audit
from cnnlens.features.index import NeighbourIndex, exact_search, normalized, recall
from tests.audit.tiny_model import tiny_loaded, write_synthetic


def _clustered(count: int, dimensions: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, dimensions))
    return (centres[rng.integers(0, 20, count)] + rng.normal(size=(count, dimensions))).astype(
        np.float32
    )


def _pages(vectors: np.ndarray, page: int = 256) -> list[tuple[np.ndarray, np.ndarray]]:
    ids = np.arange(len(vectors), dtype=np.int64) * 3  # ids are image indices, not rows
    return [(ids[s : s + page], vectors[s : s + page]) for s in range(0, len(vectors), page)]


def test_exact_index_and_brute_force_agree() -> None:
    unit = normalized(_clustered(700, 32))
    index = NeighbourIndex.build(_pages(unit), len(unit), 32, exact_max=1000)
    assert index.exact and index.info().as_dict()["kind"] == "exact"
    ids, similarities = index.search(unit[:50], 10)
    truth = exact_search(unit[:50], _pages(unit, 100), 10)
    np.testing.assert_array_equal(ids, truth)
    expected = np.sort(unit[:50] @ unit.T, axis=1)[:, ::-1][:, :10]
    np.testing.assert_allclose(similarities, expected, rtol=1e-5, atol=1e-5)


def test_past_the_exact_limit_the_index_is_ivf_with_its_recall_measured() -> None:
    unit = normalized(_clustered(3000, 32))
    sample = unit[np.random.default_rng(0).choice(3000, 2000, replace=False)]
    index = NeighbourIndex.build(_pages(unit), 3000, 32, exact_max=1000, sample=sample)
    assert not index.exact
    truth = exact_search(unit[:200], _pages(unit), 10)
    measured = recall(index.search(unit[:200], 10)[0], truth)
    info = index.info(measured).as_dict()
    assert info["kind"] == "ivf" and info["lists"] == 50 and info["probe"] == 3
    assert 0.8 <= measured <= 1.0
    assert recall(truth, truth) == 1.0


@pytest.mark.parametrize("count", [1, 2, 5])
def test_audits_too_small_for_a_map_still_get_neighbours(tmp_path: Path, count: int) -> None:
    source = write_synthetic(tmp_path / "images", count)
    run_audit(source, tmp_path / "out", AuditConfig(model="tiny"), model=tiny_loaded())
    rows = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").open()]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())["summary"]["features"]
    assert summary["map"]["method"] == "pca" and summary["images"] == count
    for row in rows:
        assert len(row["neighbors"]) == min(5, count - 1)
        assert row["cluster"] == -1  # fewer than two clusters' worth of images
        assert row["x"] is not None and row["label_issue"] is None


def test_features_off_leave_the_columns_empty(tmp_path: Path) -> None:
    source = write_synthetic(tmp_path / "images", 3)
    config = AuditConfig(model="tiny", features={"enabled": False})
    run = run_audit(source, tmp_path / "out", config, model=tiny_loaded())
    assert "features.parquet" not in run.outputs
    assert not (tmp_path / "out" / "features.faiss").exists()
    row = json.loads((tmp_path / "out" / "results.jsonl").read_text().splitlines()[0])
    assert "neighbors" not in row
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())["summary"]
    assert "features" not in summary


def test_past_the_fit_limit_umap_fits_a_sample_and_places_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cnnlens.features import mapping

    reduced = _clustered(90, 8)
    monkeypatch.setattr(mapping, "UMAP_FIT_MAX", 60)
    monkeypatch.setattr(mapping, "UMAP_TRANSFORM_PAGE", 20)
    first, made_by = mapping.project(reduced, "umap", seed=0)
    again, _ = mapping.project(reduced, "umap", seed=0)
    assert made_by == "umap" and first.shape == (90, 2)
    np.testing.assert_array_equal(first, again)  # seeded
    trust = mapping.trustworthiness(reduced, first)
    assert trust is not None and trust >= 0.85
