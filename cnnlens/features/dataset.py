"""The dataset view of a finished (or stopped) audit, built once at its end from the vectors
its forwards stored: the neighbour index (saved as features.faiss), each image's neighbours
and outlier score, the 2-D map, the clusters, the near-duplicates and the label issues
(merged into every row), features.parquet, exemplars.json with its sheets, and the summary.

Everything is read from the store a page at a time: the index holds the one full copy of the
vectors; the rest keeps (N, 50) reduced vectors and (N, k) neighbour lists. The results
depend only on the stored vectors and the config, so a resumed audit gets the map and
neighbours of an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnlens.features import clusters as clustering
from cnnlens.features.columns import FEATURE_COLUMNS
from cnnlens.features.config import FeatureConfig
from cnnlens.features.duplicates import (
    DuplicatePair,
    duplicate_groups,
    duplicate_of,
    near_duplicates,
)
from cnnlens.features.exemplars import (
    EXEMPLARS_FILE,
    LayerGeometry,
    crop_jpeg,
    exemplar_entries,
    sheet,
    sheet_path,
    top_k,
)
from cnnlens.features.index import (
    INDEX_FILE,
    RECALL_K,
    RECALL_QUERIES,
    NeighbourIndex,
    exact_search,
    normalized,
    recall,
)
from cnnlens.features.labels import LabelIssues, find_label_issues
from cnnlens.features.mapping import UMAP_NEIGHBOURS, Reducer, project, trustworthiness
from cnnlens.features.store import FeatureStore

logger = logging.getLogger("cnnlens.features")
FEATURES_PARQUET = "features.parquet"
SAMPLE_MAX = 10_000  # unit vectors that fit PCA and train an IVF index (seeded sample)
CHECKED = 1000  # of them, the queries of the IVF recall and the map's trustworthiness
_DECIMALS = 6


@dataclass
class _Neighbours:
    """Each image's nearest other images: (N, k) ids (-1: none) and cosine distances."""

    ids: np.ndarray
    distances: np.ndarray


def analyze_dataset(
    store: Any, job_id: str, out_dir: Path, config: FeatureConfig
) -> dict[str, Path]:
    """Build the dataset view of the job's analyzed images; returns the files written."""
    features = FeatureStore(store)
    count, dimensions = features.count(job_id)
    summary: dict[str, Any] = {**(features.summary(job_id) or {}), "images": count}
    if count == 0:
        features.set_summary(job_id, summary)
        return {}
    timings: dict[str, float] = {}
    clock = _Clock(timings)
    ids, hashes = features.hashes(job_id)  # every analyzed image, in order
    position = {int(index): row for row, index in enumerate(ids)}
    sample_ids = _sample(ids, SAMPLE_MAX, config.seed)
    sample = _unit_rows(features, job_id, sample_ids)
    wanted = max(config.neighbors, UMAP_NEIGHBOURS if config.map == "umap" else 0)
    neighbours, index_info = _index_and_neighbours(
        features, job_id, out_dir, (count, dimensions), sample, wanted, config, clock
    )  # the index (the one full copy of the vectors) is saved and let go here
    with clock("reduce"):
        reducer = Reducer(sample, config.seed)
        sample, sample_ids = sample[:CHECKED], sample_ids[:CHECKED]  # the rest: not needed
        reduced = np.concatenate([reducer(vectors) for _, vectors in _unit_pages(features, job_id)])
    with clock("map"):
        coordinates, made_by = project(reduced, config.map, config.seed, _graph(neighbours, ids))
        trust = trustworthiness(sample, coordinates[np.searchsorted(ids, sample_ids)])
    with clock("clusters"):
        labels = clustering.cluster(reduced, config.seed)
    del reduced
    with clock("duplicates"):
        pairs = _near_duplicates(features, job_id, ids, hashes, config)
    with clock("label_issues"):
        issues = _label_issues(features, job_id, config)
    with clock("rows"):
        names = features.names(job_id)
        found = _Findings(names, position, neighbours, coordinates, labels, pairs, issues, config)
        cluster_summary = found.write(store, features, job_id)
    written = {INDEX_FILE: out_dir / INDEX_FILE}
    with clock("parquet"):
        parquet = _write_parquet(features, job_id, out_dir, names, position, coordinates, labels)
        if parquet is not None:
            written[FEATURES_PARQUET] = parquet
    with clock("exemplars"):
        exemplars = _exemplars(store, features, job_id, out_dir, config)
        if exemplars is not None:
            written[EXEMPLARS_FILE] = exemplars
    summary.update(
        {
            "dimensions": dimensions,
            "neighbors": config.neighbors,
            "map": {"method": made_by, "trustworthiness": trust},
            "index": index_info,
            "clusters": cluster_summary,
            "unclustered": int((labels == clustering.NOISE).sum()),
            "near_duplicates": {
                "images": len(duplicate_of(pairs)),
                "groups": duplicate_groups(pairs),
                "hamming": config.near_duplicate_hamming,
                "distance": config.near_duplicate_distance,
            },
            "label_issues": None if issues is None else {
                "count": int(issues[1].flagged.sum()),
                "labelled": len(issues[0]),
                "method": issues[1].method,
            },
            "exemplars": {
                layer: {"k": config.exemplars_k} for layer in features.geometries(job_id)
            },
            "elapsed_s": {name: round(seconds, 3) for name, seconds in timings.items()},
        }
    )  # fmt: skip
    features.set_summary(job_id, summary)
    return written


def _index_and_neighbours(
    features: FeatureStore,
    job_id: str,
    out_dir: Path,
    shape: tuple[int, int],
    sample: np.ndarray,
    wanted: int,
    config: FeatureConfig,
    clock: _Clock,
) -> tuple[_Neighbours, dict[str, Any]]:
    """Build and save the index, measure an IVF index's recall, find every image's `wanted`
    nearest images; the index is freed on return."""
    count, dimensions = shape
    with clock("index"):
        index = NeighbourIndex.build(
            _unit_pages(features, job_id), count, dimensions, config.index_exact_max,
            sample, config.seed,
        )  # fmt: skip
        measured = None
        if not index.exact:
            queries = sample[:RECALL_QUERIES]
            truth = exact_search(queries, _unit_pages(features, job_id), RECALL_K)
            measured = round(recall(index.search(queries, RECALL_K)[0], truth), 4)
        index.save(out_dir / INDEX_FILE)
    with clock("neighbours"):
        found = _neighbours(index, _unit_pages(features, job_id), wanted)
    return found, index.info(measured).as_dict()


class _Clock:
    """Times the stages (summary.json's elapsed_s; a stage timed twice adds up)."""

    def __init__(self, timings: dict[str, float]) -> None:
        self.timings = timings

    def __call__(self, name: str) -> _Stage:
        return _Stage(self.timings, name)


class _Stage:
    def __init__(self, timings: dict[str, float], name: str) -> None:
        self.timings, self.name = timings, name

    def __enter__(self) -> None:
        self.started = time.perf_counter()

    def __exit__(self, *exc_info: object) -> None:
        elapsed = time.perf_counter() - self.started
        self.timings[self.name] = self.timings.get(self.name, 0.0) + elapsed


def _sample(ids: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Up to `size` ids, seeded, in image order."""
    if len(ids) <= size:
        return ids
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(ids, size, replace=False))


def _unit_pages(features: FeatureStore, job_id: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for ids, vectors in features.iter_vectors(job_id):
        yield ids, normalized(vectors)


def _unit_rows(features: FeatureStore, job_id: str, wanted: np.ndarray) -> np.ndarray:
    """The unit vectors of `wanted` ids (sorted), in their order."""
    parts = []
    for ids, vectors in _unit_pages(features, job_id):
        keep = np.isin(ids, wanted)
        if keep.any():
            parts.append(vectors[keep])
    return np.concatenate(parts)


def _neighbours(
    index: NeighbourIndex, pages: Iterator[tuple[np.ndarray, np.ndarray]], k: int
) -> _Neighbours:
    """Each image's k nearest other images (itself left out, wherever a tie puts it)."""
    found_ids, found_distances = [], []
    for ids, vectors in pages:
        hits, similarities = index.search(vectors, k + 1)
        if hits.shape[1] < k + 1:  # fewer images than k + 1
            pad = k + 1 - hits.shape[1]
            hits = np.pad(hits, ((0, 0), (0, pad)), constant_values=-1)
            similarities = np.pad(similarities, ((0, 0), (0, pad)), constant_values=-np.inf)
        own = hits == ids[:, None]
        keep = ~own
        keep[~own.any(axis=1), -1] = False  # itself not found: drop the farthest instead
        found_ids.append(hits[keep].reshape(len(ids), k))
        distances = np.clip(1.0 - similarities[keep].reshape(len(ids), k), 0.0, 2.0)
        found_distances.append(distances.astype(np.float32))
    return _Neighbours(np.concatenate(found_ids), np.concatenate(found_distances))


def _graph(neighbours: _Neighbours, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """UMAP's k-nearest graph: row positions (`ids` is sorted), itself first at distance 0
    (-1: none)."""
    count = len(neighbours.ids)
    rows = np.where(neighbours.ids >= 0, np.searchsorted(ids, neighbours.ids), -1)
    own = np.arange(count, dtype=np.int64)[:, None]
    indices = np.concatenate([own, rows], axis=1)
    distances = np.concatenate([np.zeros((count, 1), np.float32), neighbours.distances], axis=1)
    distances[indices < 0] = np.inf
    return indices, distances


def _near_duplicates(
    features: FeatureStore,
    job_id: str,
    ids: np.ndarray,
    hashes: np.ndarray,
    config: FeatureConfig,
) -> list[DuplicatePair]:
    from cnnlens.features.duplicates import hash_pairs

    candidates = hash_pairs(ids, hashes, config.near_duplicate_hamming)
    involved = sorted({i for first, second, _ in candidates for i in (first, second)})
    vectors = {i: normalized(v[None])[0] for i, v in features.vectors(job_id, involved).items()}

    def distance(first: int, second: int) -> float:
        return float(1.0 - vectors[first] @ vectors[second])

    return near_duplicates(
        ids, hashes, config.near_duplicate_hamming, config.near_duplicate_distance, distance
    )


def _label_issues(
    features: FeatureStore, job_id: str, config: FeatureConfig
) -> tuple[np.ndarray, LabelIssues] | None:
    """(labelled ids, their label issues), or None without labelled images."""
    pages = list(features.iter_labels(job_id))
    if not pages:
        return None
    ids = np.concatenate([page[0] for page in pages])
    labels = np.concatenate([page[1] for page in pages])
    classes = np.unique(labels)
    probabilities = np.concatenate(
        [p[:, classes].astype(np.float32) for _, _, p in features.iter_probabilities(job_id)]
    )
    return ids, find_label_issues(labels, probabilities, classes, config.label_issue_confidence)


class _Findings:
    """Every row's finding columns, from the arrays computed above."""

    def __init__(
        self,
        names: dict[int, str],
        position: dict[int, int],
        neighbours: _Neighbours,
        coordinates: np.ndarray,
        labels: np.ndarray,
        pairs: list[DuplicatePair],
        issues: tuple[np.ndarray, LabelIssues] | None,
        config: FeatureConfig,
    ) -> None:
        self.names, self.position = names, position
        self.neighbours, self.coordinates, self.labels = neighbours, coordinates, labels
        self.duplicates = duplicate_of(pairs)
        self.issues: dict[int, tuple[bool, float]] = {}
        if issues is not None:
            labelled, found = issues
            self.issues = {
                int(i): (bool(flag), float(score))
                for i, flag, score in zip(labelled, found.flagged, found.scores, strict=True)
            }
        self.k = config.neighbors

    def columns(self, index: int) -> dict[str, Any]:
        row = self.position.get(index)
        if row is None:  # an error row: no vector
            return dict.fromkeys(FEATURE_COLUMNS)
        ids = self.neighbours.ids[row, : self.k]
        distances = self.neighbours.distances[row, : self.k]
        kept = ids >= 0
        duplicate = self.duplicates.get(index)
        issue = self.issues.get(index)
        return {
            "x": round(float(self.coordinates[row, 0]), _DECIMALS),
            "y": round(float(self.coordinates[row, 1]), _DECIMALS),
            "cluster": int(self.labels[row]),
            "neighbors": [
                {
                    "name": self.names[int(i)],
                    "index": int(i),
                    "distance": round(float(d), _DECIMALS),
                }
                for i, d in zip(ids[kept], distances[kept], strict=True)
            ],
            "near_duplicate_of": None if duplicate is None else self.names[duplicate[0]],
            "outlier_score": round(float(distances[kept].mean()), _DECIMALS)
            if kept.any()
            else None,
            "label_issue": None if issue is None else issue[0],
            "label_issue_score": None if issue is None else round(issue[1], _DECIMALS),
        }

    def write(self, store: Any, features: FeatureStore, job_id: str) -> list[dict[str, Any]]:
        """Merge the columns into every row, a page at a time; returns the cluster summary."""
        summary = clustering.ClusterSummary()
        page: dict[int, dict[str, Any]] = {}
        for record, _ in store.iter_records(job_id):
            columns = self.columns(int(record["index"]))
            summary.add(record, columns["cluster"])
            page[int(record["index"])] = columns
            if len(page) >= 2048:
                features.update_records(job_id, page)
                page = {}
        if page:
            features.update_records(job_id, page)
        return summary.result()


def _write_parquet(
    features: FeatureStore,
    job_id: str,
    out_dir: Path,
    names: dict[int, str],
    position: dict[int, int],
    coordinates: np.ndarray,
    labels: np.ndarray,
) -> Path | None:
    """features.parquet: name, vector, x, y, cluster; one row per analyzed image."""
    from cnnlens.audit.files import open_atomic
    from cnnlens.audit.parquet import parquet_available

    if not parquet_available():
        return None
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            pa.field("index", pa.int64()),
            pa.field("name", pa.string()),
            pa.field("vector", pa.list_(pa.float32())),
            pa.field("x", pa.float64()),
            pa.field("y", pa.float64()),
            pa.field("cluster", pa.int64()),
        ]
    )
    path = out_dir / FEATURES_PARQUET
    with open_atomic(path) as sink, pq.ParquetWriter(sink, schema) as writer:
        for ids, vectors in features.iter_vectors(job_id):
            rows = np.array([position[int(i)] for i in ids])
            table = pa.table(
                {
                    "index": ids,
                    "name": [names[int(i)] for i in ids],
                    "vector": pa.FixedSizeListArray.from_arrays(
                        pa.array(vectors.reshape(-1), pa.float32()), vectors.shape[1]
                    ).cast(pa.list_(pa.float32())),
                    "x": coordinates[rows, 0].astype(np.float64),
                    "y": coordinates[rows, 1].astype(np.float64),
                    "cluster": labels[rows],
                },
                schema=schema,
            )
            writer.write_table(table)
    return path


def _exemplars(
    store: Any, features: FeatureStore, job_id: str, out_dir: Path, config: FeatureConfig
) -> Path | None:
    """exemplars.json ({layer: {channel: [{name, index, activation, box}]}}) and one sheet
    of crops per channel under exemplars/<layer>/<channel>.png."""
    from cnnlens.audit.files import write_atomic

    geometries = {
        layer: LayerGeometry.from_json(text) for layer, text in features.geometries(job_id).items()
    }
    if not geometries:
        return None
    result: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for layer, geometry in geometries.items():
        best = top_k(features.iter_maxima(job_id, layer), geometry.channels, config.exemplars_k)
        wanted = sorted({int(i) for i in best.images.flatten().tolist()})
        records = {i: r for i in wanted if (r := store.record(job_id, i)) is not None}
        result[layer] = exemplar_entries(best, geometry, records)
        _write_sheets(store, job_id, out_dir, layer, result[layer])
    path = out_dir / EXEMPLARS_FILE
    write_atomic(path, json.dumps(result))
    return path


def _write_sheets(
    store: Any, job_id: str, out_dir: Path, layer: str, entries: dict[str, list[dict[str, Any]]]
) -> None:
    """Each image is decoded once; its crops wait as small JPEGs until the sheets are drawn."""
    import io

    from PIL import Image

    from cnnlens.api.png import png_bytes
    from cnnlens.audit.files import write_atomic
    from cnnlens.audit.sources import readable
    from cnnlens.imageio import load_image

    wanted: dict[int, list[tuple[str, int, list[int]]]] = {}
    for channel, found in entries.items():
        for rank, entry in enumerate(found):
            wanted.setdefault(entry["index"], []).append((channel, rank, entry["box"]))
    paths = FeatureStore(store).paths(job_id, list(wanted))
    crops: dict[tuple[str, int], bytes] = {}
    for index, boxes in wanted.items():
        try:
            image = load_image(readable(str(paths[index])))
        except Exception as error:  # a file gone since the audit: its crops are left out
            logger.warning("exemplars: image %s unreadable (%s)", index, error)
            continue
        for channel, rank, box in boxes:
            crops[(channel, rank)] = crop_jpeg(image, box)
    for channel, found in entries.items():
        tiles = [
            Image.open(io.BytesIO(crops[(channel, rank)])).convert("RGB")
            for rank in range(len(found))
            if (channel, rank) in crops
        ]
        if tiles:
            write_atomic(
                sheet_path(out_dir, layer, channel), png_bytes(sheet(tiles)), durable=False
            )
