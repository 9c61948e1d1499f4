"""The 2-D map of an audit's images: PCA to at most 50 dimensions, then UMAP (umap-learn),
or PCA or t-SNE (openTSNE), seeded: the same vectors give the same coordinates.

UMAP takes the neighbour graph the audit's own index found (`precomputed_knn`: cosine on the
full vectors), so the map and the `neighbors` column tell the same story and UMAP does not
search again. A seeded UMAP runs single-threaded; umap-learn compiles its numba functions in
every new process (about 10 s on 2 cores), and `cache_umap_compilation` keeps them on disk.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np

from cnnlens.features.config import MapMethod

logger = logging.getLogger("cnnlens.features")
PCA_DIMENSIONS = 50
UMAP_NEIGHBOURS = 15
UMAP_MIN_POINTS = 10  # fewer points: PCA (UMAP's spectral layout needs a graph to lay out)
# Past this many points UMAP is fitted on a seeded sample of this size (its own neighbour
# search) and places the others with `transform`: a seeded fit of 100 000 points took 195 s
# on 2 busy cores, single-threaded, and grows faster than the points.
UMAP_FIT_MAX = 100_000
UMAP_TRANSFORM_PAGE = 20_000
TRUSTWORTHINESS_SAMPLE = 1000  # points on which the map's trustworthiness is measured
TRUSTWORTHINESS_K = 5


@dataclass(frozen=True)
class MapResult:
    coordinates: np.ndarray  # (N, 2) float32
    method: str  # what made it: "umap", "pca" or "tsne" (small audits fall back to PCA)
    trustworthiness: float | None  # sklearn's, k = 5, on up to 1000 points (cosine)

    def as_dict(self) -> dict[str, object]:
        return {"method": self.method, "trustworthiness": self.trustworthiness}


class Reducer:
    """PCA to at most 50 dimensions, fitted on a sample of the unit vectors (seeded)."""

    def __init__(self, sample: np.ndarray, seed: int) -> None:
        from sklearn.decomposition import PCA

        self.pca = None  # one image: nothing to spread out
        if len(sample) >= 2:
            components = max(1, min(PCA_DIMENSIONS, sample.shape[1], len(sample) - 1))
            with warnings.catch_warnings():  # identical images: a zero variance ratio
                warnings.simplefilter("ignore", RuntimeWarning)
                self.pca = PCA(n_components=components, random_state=seed).fit(sample)

    def __call__(self, vectors: np.ndarray) -> np.ndarray:
        if self.pca is None:
            return np.zeros((len(vectors), 1), np.float32)
        return np.asarray(self.pca.transform(vectors), dtype=np.float32)


def project(
    reduced: np.ndarray,
    method: MapMethod,
    seed: int,
    graph: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, str]:
    """(N, 2) coordinates of the PCA-reduced vectors, and the method that made them.
    `graph`: (N, k) row positions of each point's nearest points (itself first) and their
    cosine distances, for UMAP."""
    count = len(reduced)
    if count == 0:
        return np.zeros((0, 2), np.float32), method
    if method == "umap" and count >= UMAP_MIN_POINTS:
        return _umap(reduced, seed, graph), "umap"
    if method == "tsne" and count >= UMAP_MIN_POINTS:
        return _tsne(reduced, seed), "tsne"
    return _pca_2d(reduced), "pca"


def _pca_2d(reduced: np.ndarray) -> np.ndarray:
    """The first two PCA components (the reduced vectors are PCA's already, in order)."""
    coordinates = np.zeros((len(reduced), 2), np.float32)
    width = min(2, reduced.shape[1])
    coordinates[:, :width] = reduced[:, :width]
    return coordinates


def _umap(
    reduced: np.ndarray, seed: int, graph: tuple[np.ndarray, np.ndarray] | None
) -> np.ndarray:
    cache_umap_compilation()
    import umap

    count = len(reduced)
    neighbours = min(UMAP_NEIGHBOURS, count - 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # seeded -> single-threaded; no search index kept
        if count > UMAP_FIT_MAX:
            return _umap_sampled(reduced, seed, neighbours)
        knn: tuple[np.ndarray | None, np.ndarray | None, None] = (None, None, None)
        if graph is not None and graph[0].shape[1] >= neighbours:
            knn = (
                np.ascontiguousarray(graph[0][:, :neighbours], np.int32),
                np.ascontiguousarray(graph[1][:, :neighbours], np.float32),
                None,
            )
        model = umap.UMAP(
            n_components=2,
            n_neighbors=neighbours,
            random_state=seed,
            n_jobs=1,
            metric="cosine" if knn[0] is None else "euclidean",
            precomputed_knn=knn,
        )
        return np.asarray(model.fit_transform(reduced), dtype=np.float32)


def _umap_sampled(reduced: np.ndarray, seed: int, neighbours: int) -> np.ndarray:
    """UMAP fitted on a seeded sample of UMAP_FIT_MAX points (with its own neighbour index),
    the other points placed by `transform`, a page at a time."""
    import umap

    count = len(reduced)
    fitted = np.sort(np.random.default_rng(seed).choice(count, UMAP_FIT_MAX, replace=False))
    model = umap.UMAP(
        n_components=2, n_neighbors=neighbours, random_state=seed, n_jobs=1, metric="euclidean"
    ).fit(reduced[fitted])
    coordinates = np.zeros((count, 2), np.float32)
    coordinates[fitted] = model.embedding_
    rest = np.setdiff1d(np.arange(count), fitted)
    for start in range(0, len(rest), UMAP_TRANSFORM_PAGE):
        page = rest[start : start + UMAP_TRANSFORM_PAGE]
        coordinates[page] = model.transform(reduced[page])
    return coordinates


def _tsne(reduced: np.ndarray, seed: int) -> np.ndarray:
    from openTSNE import TSNE

    perplexity = max(2.0, min(30.0, (len(reduced) - 1) / 3))
    embedding = TSNE(
        n_components=2, perplexity=perplexity, random_state=seed, n_jobs=1, verbose=False
    ).fit(np.ascontiguousarray(reduced, np.float64))
    return np.asarray(embedding, dtype=np.float32)


def trustworthiness(vectors: np.ndarray, coordinates: np.ndarray) -> float | None:
    """sklearn's trustworthiness (k = 5, cosine in feature space): 1 when every point's map
    neighbours are also its feature-space neighbours; None for fewer than 12 points."""
    if len(vectors) < 2 * TRUSTWORTHINESS_K + 2:
        return None
    from sklearn.manifold import trustworthiness as measure

    value = measure(vectors, coordinates, n_neighbors=TRUSTWORTHINESS_K, metric="cosine")
    return round(float(value), 4)


_cached = False


def cache_umap_compilation() -> None:
    """Keep umap-learn's numba functions compiled on disk (numba's own cache, beside the
    package or in the user's cache folder): a new process then loads them instead of
    compiling. Measured on 2 cores, 2 000 points: the first fit of a process 12 s -> 1.8 s."""
    global _cached
    if _cached:
        return
    _cached = True
    try:
        import numba
        import umap.layouts
        import umap.umap_
        import umap.utils
    except ImportError:  # pragma: no cover - umap-learn is a dependency
        return
    dispatcher = getattr(numba.core.registry, "CPUDispatcher", None)
    for module in (umap.umap_, umap.layouts, umap.utils):
        for function in list(vars(module).values()):
            if dispatcher is None or not isinstance(function, dispatcher):
                continue
            if type(function._cache).__name__ == "NullCache":
                try:
                    function.enable_caching()
                except Exception as error:  # a read-only install: compiled each time
                    logger.debug("umap: numba cache unavailable (%s)", error)
                    return
