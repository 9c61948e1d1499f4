"""Image retrieval over a finished audit (the seeds' "Image retrieval", 004): an image's
feature vector, taken at the audit's feature layer, searched in the audit's saved index. The
CLI (`cnnlens neighbors`), the service (POST /v1/audits/{id}/neighbors) and the clients all
answer through `neighbours`, so they agree.

Indexes are kept loaded (a few, least recently used out): a query then costs its search,
not the read of the index file.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from cnnlens.errors import CnnlensError
from cnnlens.features.index import INDEX_FILE, NeighbourIndex

KEPT_INDEXES = 4
MAX_K = 100


class NoIndexError(CnnlensError):
    """The audit has no neighbour index (yet): running, features off, or failed early."""

    code = "no_index"
    status = 409


_indexes: OrderedDict[tuple[str, int, int], NeighbourIndex] = OrderedDict()
_lock = threading.Lock()


def index_path(out_dir: Path, features_on: bool, status: str) -> Path:
    """The audit's saved index, or NoIndexError saying why there is none."""
    path = Path(out_dir) / INDEX_FILE
    if not features_on:
        raise NoIndexError("this audit ran without feature vectors (features off)")
    if not path.is_file():
        if status in ("queued", "running"):
            raise NoIndexError("the neighbour index is built when the audit ends; try later")
        raise NoIndexError("this audit has no neighbour index (no image was analyzed)")
    return path


def loaded_index(path: Path) -> NeighbourIndex:
    """The index at `path`, read once while the file stays the same."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    with _lock:
        found = _indexes.get(key)
        if found is not None:
            _indexes.move_to_end(key)
            return found
    index = NeighbourIndex.load(path)
    with _lock:
        _indexes[key] = index
        while len(_indexes) > KEPT_INDEXES:
            _indexes.popitem(last=False)
    return index


def neighbours(
    index: NeighbourIndex, vector: np.ndarray, k: int, store: Any, job_id: str
) -> list[dict[str, Any]]:
    """The k audited images nearest to `vector` (D,), nearest first: name, index, distance
    (1 - cosine), label_name and predicted_name."""
    ids, similarities = index.search(np.asarray(vector, np.float32)[None], min(k, MAX_K))
    found = []
    for image, similarity in zip(ids[0], similarities[0], strict=True):
        if image < 0:
            continue
        record = store.record(job_id, int(image)) or {}
        found.append(
            {
                "name": record.get("name"),
                "index": int(image),
                "distance": round(max(0.0, 1.0 - float(similarity)), 6),
                "label_name": record.get("label_name"),
                "predicted_name": record.get("predicted_name"),
            }
        )
    return found
