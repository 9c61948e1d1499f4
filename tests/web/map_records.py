"""Synthetic audit rows with a feature space, for the report's map (tests and benchmark):
seeded blobs on the map, one cluster and one class per blob, a few wrong predictions, label
issues and copies, and each row's neighbours by map distance."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

CLASSES = ("tench", "goldfish", "Egyptian cat", "espresso", "rocket", "space shuttle")


def map_records(
    count: int, blobs: int = 3, seed: int = 0, spread: float = 0.6
) -> list[dict[str, Any]]:
    """`count` rows in `blobs` blobs four to a row (blob b centred at (10 (b % 4),
    10 (b // 4) + 5 (b % 2)), Gaussian of deviation `spread`: apart at 0.6), blob b labelled
    and clustered b; every 9th row of a blob predicted wrong."""
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(seed)
    blob = np.arange(count) % blobs
    centres = np.stack([10.0 * (blob % 4), 10.0 * (blob // 4) + 5.0 * (blob % 2)], axis=1)
    points = centres + rng.normal(0, spread, size=(count, 2))
    found = NearestNeighbors(n_neighbors=min(6, count)).fit(points)
    distances, nearest = found.kneighbors(points)
    records = []
    for index in range(count):
        label = int(blob[index]) % len(CLASSES)
        wrong = index // blobs % 9 == 4
        predicted = (label + 1) % len(CLASSES) if wrong else label
        issue = index // blobs % 50 == 7
        flags = ["misclassified"] if wrong else []
        records.append(
            {
                "index": index, "name": f"img{index:06d}.png", "status": "ok",
                "width": 320, "height": 240,
                "label": label, "label_name": CLASSES[label],
                "predicted": predicted, "predicted_name": CLASSES[predicted],
                "confidence": float(rng.uniform(0.3, 1.0)), "correct": not wrong,
                "flags": flags, "maps": {"grad_cam": {}},
                "overlays": {"grad_cam": f"overlays/{index:05d}_img_grad_cam.png"},
                "fragility_tested": False, "fragile_epsilon": None,
                "x": float(points[index, 0]), "y": float(points[index, 1]),
                "cluster": int(blob[index]),
                "neighbors": [
                    {"name": f"img{int(j):06d}.png", "index": int(j),
                     "distance": round(float(d) / 20, 6)}
                    for j, d in zip(nearest[index, 1:], distances[index, 1:], strict=True)
                ],
                "near_duplicate_of": None, "outlier_score": float(distances[index, 1:].mean()),
                "label_issue": issue, "label_issue_score": 0.99 if issue else 0.1,
            }
        )  # fmt: skip
    return records


def features_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """A `summary.features` for the rows: the report shows its map and findings."""
    clusters = sorted({r["cluster"] for r in records})
    return {
        "layer": "classifier (input)", "images": len(records), "dimensions": 1280,
        "neighbors": 5, "map": {"method": "umap", "trustworthiness": 0.95},
        "index": {"kind": "exact", "recall_at_10": 1.0},
        "clusters": [
            {"cluster": c, "size": sum(r["cluster"] == c for r in records),
             "labelled": 0, "accuracy": None, "top_labels": []}
            for c in clusters
        ],
        "near_duplicates": {"images": 0, "groups": 0},
        "label_issues": {"count": sum(bool(r["label_issue"]) for r in records),
                         "labelled": len(records), "method": "self_confidence"},
    }  # fmt: skip


def jpeg(colour: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def png(colour: tuple[int, int, int], size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


OVERLAY_SIZE = (320, 240)


def write_map_report(
    folder: Path, records: list[dict[str, Any]], thumbnail_size: tuple[int, int] = (64, 48)
) -> Path:
    """index.html of `records` beside overlays/ (every overlay a 320 x 240 PNG), as an audit
    writes them; every row has a thumbnail, the report embeds the first EMBEDDED_ROWS."""
    from cnnlens.audit.report import render_report
    from cnnlens.audit.summary import summarize

    (folder / "overlays").mkdir(parents=True, exist_ok=True)
    overlay = png((30, 90, 200), OVERLAY_SIZE)
    for record in records:
        (folder / record["overlays"]["grad_cam"]).write_bytes(overlay)
    thumbnail = jpeg((200, 60, 40), thumbnail_size)
    html = render_report(
        job={"id": "map", "model": "m", "methods": ["grad_cam"], "status": "done"},
        records=records, summary={**summarize(records), "features": features_summary(records)},
        thumbnails={r["index"]: thumbnail for r in records},
        overlays={r["index"]: {"grad_cam": thumbnail} for r in records}, class_means=[],
    )  # fmt: skip
    path = folder / "index.html"
    path.write_text(html, encoding="utf-8")
    return path
