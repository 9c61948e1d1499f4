"""Ray Data reads an audit's images for the Ray engine: `read_binary_files` over the job's
pending images, a chunk at a time, so that their bytes (never their paths) reach the replicas.

URIs (s3://, gs://, abfs://, file://, fsspec's schemes) are read by tasks anywhere on the
cluster; local paths become `local://` paths, which Ray Data reads on this machine's node (the
files need not exist anywhere else). An image that Ray Data cannot read fails its chunk's read:
what the chunk has left is read here one by one, so that only the unreadable images become
error rows."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from cnnlens.audit.records import AuditItem, ImageOutcome
from cnnlens.audit.sources import filesystem, is_uri, read_bytes

logger = logging.getLogger("cnnlens.audit")
CHUNK = 1024  # images per dataset: a bounded listing in memory, a failed read costs one chunk
Shipped = tuple[list[AuditItem], list[ImageOutcome]]  # items with their bytes, error rows
ReadEach = Callable[[list[AuditItem]], Shipped]


def read_with_ray_data(
    pending: Iterable[AuditItem], batch_size: int, read_each: ReadEach
) -> Iterator[Shipped]:
    """Batches of at most `batch_size` items, each carrying its image's bytes (and its mask's);
    `read_each` reads (in this process) what Ray Data could not."""
    from cnnlens.audit.engine import batched

    for chunk in batched(pending, CHUNK):
        pending_here = _Pending(chunk)
        try:
            for rows in _dataset(chunk).iter_batches(batch_size=batch_size, batch_format="numpy"):
                found = [pending_here.take(str(path)) for path in rows["path"]]
                yield (
                    [
                        carrying(item, bytes(data))
                        for item, data in zip(found, rows["bytes"], strict=True)
                        if item is not None
                    ],
                    [],
                )
        except Exception as error:  # Ray wraps the reader's OSError in its own errors
            logger.warning(
                "Ray Data could not read %d images (%s); reading them one by one",
                len(pending_here.by_key), type(error).__name__,
            )  # fmt: skip
        for batch in batched(pending_here.left(), batch_size):
            yield read_each(batch)


def _dataset(chunk: list[AuditItem]) -> Any:
    import ray.data

    paths, system = _paths(chunk)
    return ray.data.read_binary_files(
        paths,
        include_paths=True,
        filesystem=system,
        # I/O, not compute: the replicas hold the CPUs, and reads must not wait for them
        ray_remote_args={"num_cpus": 0},
    )


def _paths(chunk: list[AuditItem]) -> tuple[list[str], Any]:
    """What Ray Data reads, and the filesystem to read it with (None: Ray Data resolves it)."""
    first = chunk[0].path
    if not is_uri(first):
        return [f"local://{Path(item.path).absolute()}" for item in chunk], None
    system, _ = filesystem(first)
    if type(system).__name__ != "PyFileSystem":
        return [item.path for item in chunk], None  # a scheme pyarrow itself reads
    return [item.path.partition("://")[2] for item in chunk], system  # fsspec's


def _key(item: AuditItem) -> str:
    """How Ray Data names an item's file: its path without scheme, or the local absolute path."""
    if is_uri(item.path):
        return item.path.partition("://")[2].strip("/")
    return str(Path(item.path).absolute()).strip("/")


def _tail(key: str) -> str:
    """The key without its first part: a URI's host part, which some filesystems name their own
    way (abfs://container@account/... is container/..., hdfs://host:port/... is /...)."""
    return key.partition("/")[2]


class _Pending:
    """The chunk's items that Ray Data has yet to return, found by the path it returns."""

    def __init__(self, chunk: list[AuditItem]) -> None:
        self.by_key = {_key(item): item for item in chunk}
        self.by_tail = {_tail(key): key for key in self.by_key}

    def take(self, path: str) -> AuditItem | None:
        path = path.strip("/")
        key = next(
            (k for k in (path, self.by_tail.get(path), self.by_tail.get(_tail(path)))
             if k is not None and k in self.by_key),
            None,
        )  # fmt: skip
        return None if key is None else self.by_key.pop(key)

    def left(self) -> list[AuditItem]:
        return sorted(self.by_key.values(), key=lambda item: item.index)


def carrying(item: AuditItem, data: bytes) -> AuditItem:
    """The item as it travels: its bytes and its mask's, no path a worker could open."""
    mask = None
    if item.mask_path is not None:
        try:
            mask = read_bytes(item.mask_path)
        except OSError:
            mask = None  # as locally: an unreadable mask leaves the boxes alone
    return replace(item, path="", mask_path=None, data=data, mask_data=mask)
