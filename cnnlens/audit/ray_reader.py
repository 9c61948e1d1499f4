"""Ray Data reads an audit's images for the Ray engine: `read_binary_files` over the job's
pending URIs (s3://, gs://, abfs://, file://, fsspec's schemes), a chunk at a time, by tasks
anywhere on the cluster, so that the images' bytes (never their paths) reach the replicas.

Local paths are read by this process (`read_each`), whose node is the only one sure to have
them: Ray Data's own way to read on the driver's node (`local://`) is deprecated. An image that
Ray Data cannot read fails its chunk's read: what the chunk has left is read here one by one,
so that only the unreadable images become error rows. A URI names a place every node reads
alike: `file://` is for a filesystem mounted on every node."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
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
        if not is_uri(chunk[0].path):
            yield from map(read_each, batched(chunk, batch_size))
            continue
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

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = context.print_on_execution_start = False
    paths, system = _paths(chunk)
    # I/O, not compute: no CPU asked, since the replicas hold them and reads must not wait
    return ray.data.read_binary_files(paths, include_paths=True, filesystem=system, num_cpus=0)


def _paths(chunk: list[AuditItem]) -> tuple[list[str], Any]:
    """What Ray Data reads, and the filesystem to read it with (None: Ray Data resolves it)."""
    system, _ = filesystem(chunk[0].path)
    if type(system).__name__ != "PyFileSystem":
        return [item.path for item in chunk], None  # a scheme pyarrow itself reads
    return [item.path.partition("://")[2] for item in chunk], system  # fsspec's


def _key(item: AuditItem) -> str:
    """How Ray Data names an item's file: its URI without the scheme."""
    return item.path.partition("://")[2].strip("/")


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
