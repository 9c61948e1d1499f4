"""The dataset view of an audit of scikit-image crops (efficientnet_lite0): near-duplicates,
label issues, neighbours, the map and the clusters, checked against what the set holds."""

from __future__ import annotations

import csv
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from sklearn.manifold import trustworthiness

from cnnlens.features.index import INDEX_FILE, NeighbourIndex
from tests.features.conftest import PhotoAudit
from tests.features.photos import FLIPPED


def test_copies_are_near_duplicates_and_distinct_photos_never_paired(
    photo_audit: PhotoAudit,
) -> None:
    records, copies = photo_audit.records, photo_audit.photos.copies
    originals = {original: copy for copy, original in copies.items()}
    for name, record in records.items():
        expected = copies.get(name) or originals.get(name)
        assert record["near_duplicate_of"] == expected, name
    found = photo_audit.summary["near_duplicates"]
    assert (found["images"], found["groups"]) == (2 * len(copies), len(copies))


def test_flipped_labels_are_flagged_with_few_false_flags(photo_audit: PhotoAudit) -> None:
    labelled = {n: r for n, r in photo_audit.records.items() if r["label"] is not None}
    flagged = {name for name, record in labelled.items() if record["label_issue"]}
    assert set(FLIPPED) <= flagged
    assert len(flagged - set(FLIPPED)) <= 1  # at most one of the other 14 labelled images
    scores = {name: record["label_issue_score"] for name, record in labelled.items()}
    assert min(scores[name] for name in FLIPPED) > max(
        score for name, score in scores.items() if name not in FLIPPED
    )
    unlabelled = [r for r in photo_audit.records.values() if r["label"] is None]
    assert all(r["label_issue"] is None and r["label_issue_score"] is None for r in unlabelled)
    issues = photo_audit.summary["label_issues"]
    assert issues == {"count": len(flagged), "labelled": len(labelled), "method": "self_confidence"}


def _stored(photo_audit: PhotoAudit) -> tuple[list[str], np.ndarray, np.ndarray]:
    table = pq.read_table(photo_audit.out / "features.parquet").to_pydict()
    vectors = np.array(table["vector"], np.float32)
    coordinates = np.array([table["x"], table["y"]], np.float64).T
    return table["name"], vectors, coordinates


def test_neighbours_equal_a_brute_force_cosine_search(photo_audit: PhotoAudit) -> None:
    names, vectors, _ = _stored(photo_audit)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    distances = 1.0 - unit.astype(np.float64) @ unit.T.astype(np.float64)
    np.fill_diagonal(distances, np.inf)
    for row, name in enumerate(names):
        nearest = np.argsort(distances[row], kind="stable")[:5]
        found = photo_audit.records[name]["neighbors"]
        assert [entry["name"] for entry in found] == [names[i] for i in nearest], name
        np.testing.assert_allclose(
            [entry["distance"] for entry in found], distances[row, nearest], atol=2e-5
        )
        outlier = photo_audit.records[name]["outlier_score"]
        assert abs(outlier - distances[row, nearest].mean()) < 2e-5  # mean distance, k = 5
    # the saved index answers a query with the same images
    index = NeighbourIndex.load(photo_audit.out / INDEX_FILE)
    ids, _ = index.search(vectors[:1], 6)
    by_index = {r["index"]: n for n, r in photo_audit.records.items()}
    assert [by_index[int(i)] for i in ids[0][1:]] == [
        e["name"] for e in photo_audit.records[names[0]]["neighbors"]
    ]


def test_map_keeps_the_neighbourhoods(photo_audit: PhotoAudit) -> None:
    names, vectors, coordinates = _stored(photo_audit)
    measured = trustworthiness(vectors, coordinates, n_neighbors=5, metric="cosine")
    assert measured >= 0.85
    assert photo_audit.summary["map"] == {"method": "umap", "trustworthiness": round(measured, 4)}
    for row, name in enumerate(names):
        record = photo_audit.records[name]
        assert (record["x"], record["y"]) == tuple(np.round(coordinates[row], 6))


def test_clusters_group_the_photos_and_are_listed_worst_first(photo_audit: PhotoAudit) -> None:
    clusters = photo_audit.summary["clusters"]
    by_cluster: dict[int, set[str]] = {}
    for name, record in photo_audit.records.items():
        by_cluster.setdefault(record["cluster"], set()).add(name.split("_")[0])
    # each cluster holds crops of one photo (copies and mirrors included)
    assert all(len(photos) == 1 for cluster, photos in by_cluster.items() if cluster >= 0)
    sizes = {entry["cluster"]: entry["size"] for entry in clusters}
    for cluster, size in sizes.items():
        assert size == sum(r["cluster"] == cluster for r in photo_audit.records.values())
    accuracies = [entry["accuracy"] for entry in clusters if entry["accuracy"] is not None]
    assert accuracies == sorted(accuracies)
    assert clusters[-1]["accuracy"] is None or all(c["accuracy"] is not None for c in clusters)
    cat = next(c for c in clusters if c["top_labels"][0]["name"] == "Egyptian cat")
    assert cat["accuracy"] == (cat["labelled"] - 1) / cat["labelled"]  # its flipped label


def test_tables_and_report_carry_the_columns(photo_audit: PhotoAudit) -> None:
    out = photo_audit.out
    with open(out / "results.csv", newline="", encoding="utf-8") as handle:
        rows = {row["name"]: row for row in csv.DictReader(handle)}
    copy = next(iter(photo_audit.photos.copies))
    assert rows[copy]["near_duplicate_of"] == photo_audit.photos.copies[copy]
    first = photo_audit.records[copy]["neighbors"][0]
    assert rows[copy]["neighbors"].startswith(f"{first['name']}:{first['distance']:.4f}")
    table = pq.read_table(out / "results.parquet").to_pydict()
    position = table["name"].index(copy)
    assert table["near_duplicate_of"][position] == photo_audit.photos.copies[copy]
    assert json.loads(table["neighbors"][position])[0]["name"] == first["name"]
    html = (out / "index.html").read_text("utf-8")
    assert "Feature space" in html and "g:label_issue" in html and "g:cluster:" in html
    data = html.split("<script id='rows' type='application/json'>")[1].split("</script>")[0]
    entries = json.loads(data)
    assert {entry["d"]["name"] for entry in entries} == set(photo_audit.records)
    sample = next(entry["d"] for entry in entries if entry["d"]["name"] == copy)
    assert sample["x"] == photo_audit.records[copy]["x"]
    assert "near_duplicate" in next(e["g"] for e in entries if e["d"]["name"] == copy)


def test_the_cli_prints_the_findings_and_the_worst_cluster(
    photo_audit: PhotoAudit, capsys: pytest.CaptureFixture[str]
) -> None:
    from cnnlens.cli.commands.audit import _print_features

    _print_features(photo_audit.summary)
    lines = capsys.readouterr().out.splitlines()
    issues, duplicates = photo_audit.summary["label_issues"], photo_audit.summary["near_duplicates"]
    assert f"label issues {issues['count']} of {issues['labelled']}" in lines[0]
    assert f"near-duplicates {duplicates['images']} in {duplicates['groups']} groups" in lines[0]
    worst = next(c for c in photo_audit.summary["clusters"] if c["accuracy"] is not None)
    assert lines[1].startswith(f"worst cluster: {worst['cluster']}, {worst['size']} images")
    assert f"{worst['top_labels'][0]['name']} ({worst['top_labels'][0]['count']})" in lines[1]
