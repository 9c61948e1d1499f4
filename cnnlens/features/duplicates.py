"""Near-duplicates: the same photo resized or re-compressed, found by a perceptual hash
(ImageHash's pHash, 64 bits) and confirmed by the feature vectors.

A classifier's pooled features alone cannot tell a copy from a different photo of the same
thing: on crops of scikit-image photos with efficientnet_lite0 a resized, JPEG-45 copy lay at
cosine distance 0.08-0.20 from its original while crops of two different photos came as
close as 0.02. pHash put every copy within 4 bits of its original and distinct crops 10 bits
apart or more. A pair is a near-duplicate when both hold: pHash within
`near_duplicate_hamming` bits and features within `near_duplicate_distance`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

HASH_BITS = 64


def perceptual_hash(image: Image.Image) -> int:
    """pHash (DCT of the 32 x 32 greyscale image, 8 x 8 low frequencies against their median)
    as a 64-bit unsigned integer. Taken from the audit's thumbnail of the decoded image: the
    hash reads 32 x 32 pixels, so it is the same as on the full image but costs far less."""
    import imagehash

    bits = imagehash.phash(image).hash.flatten()  # (64,) bool, row-major
    return int(np.packbits(bits.astype(np.uint8)).view(">u8")[0])


def as_signed(value: int) -> int:
    """A 64-bit hash as SQLite stores integers (signed)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def hamming(a: int, b: int) -> int:
    return ((a ^ b) & ((1 << 64) - 1)).bit_count()


@dataclass(frozen=True)
class DuplicatePair:
    first: int  # image indices, first < second
    second: int
    bits: int  # pHash Hamming distance
    distance: float  # feature cosine distance


def hash_pairs(ids: np.ndarray, hashes: np.ndarray, radius: int) -> list[tuple[int, int, int]]:
    """(id, id, bits) of every pair whose hashes differ in at most `radius` bits (faiss's
    binary index: exact Hamming range search), first id < second."""
    import faiss

    if len(ids) < 2:
        return []
    codes = np.ascontiguousarray(hashes.astype(">u8").view(np.uint8).reshape(-1, 8))
    index = faiss.IndexBinaryFlat(HASH_BITS)
    index.add(codes)
    # faiss's binary range search keeps distances strictly below the radius
    limits, distances, found = index.range_search(codes, radius + 1)
    pairs = []
    for row in range(len(ids)):
        for position in range(int(limits[row]), int(limits[row + 1])):
            other = int(found[position])
            if other > row:
                pairs.append((int(ids[row]), int(ids[other]), int(distances[position])))
    return pairs


def near_duplicates(
    ids: np.ndarray,
    hashes: np.ndarray,
    radius: int,
    max_distance: float,
    cosine_distance: Callable[[int, int], float],
) -> list[DuplicatePair]:
    """Pairs within `radius` pHash bits whose features lie within `max_distance`."""
    found = []
    for first, second, bits in hash_pairs(ids, hashes, radius):
        distance = cosine_distance(first, second)
        if distance <= max_distance:
            found.append(DuplicatePair(first, second, bits, distance))
    return found


def duplicate_of(pairs: list[DuplicatePair]) -> dict[int, tuple[int, DuplicatePair]]:
    """Each image in a pair -> its closest near-duplicate (fewest bits, then nearest
    features, then lowest index) and that pair."""
    best: dict[int, tuple[int, DuplicatePair]] = {}
    for pair in pairs:
        for this, other in ((pair.first, pair.second), (pair.second, pair.first)):
            current = best.get(this)
            key = (pair.bits, pair.distance, other)
            if current is None or key < (current[1].bits, current[1].distance, current[0]):
                best[this] = (other, pair)
    return best


def duplicate_groups(pairs: list[DuplicatePair]) -> int:
    """How many groups of near-duplicates (connected by pairs) there are."""
    parent: dict[int, int] = {}

    def root(node: int) -> int:
        while parent.setdefault(node, node) != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for pair in pairs:
        parent[root(pair.first)] = root(pair.second)
    return len({root(node) for node in parent})
