"""The same audit on a Ray cluster, with no shared filesystem: Ray Data's readers read each
batch's image bytes (URIs on the cluster, local files on this machine's node; see ray_reader)
and the bytes go to model replicas sized by the cluster's resources; the outcomes (overlays
included) come back here and go through the engine's one batch loop into the store. A replica
lost with its node has its batches run again on the others; the store records each image
once."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from cnnlens.audit.config import AuditConfig
from cnnlens.audit.engine import AuditRun, Watch, run_batches
from cnnlens.audit.ray_reader import carrying, read_with_ray_data
from cnnlens.audit.records import AuditItem, ImageOutcome, error_outcome
from cnnlens.audit.replicas import PortableModel, ReplicaPool, ReplicaShape
from cnnlens.audit.sources import is_uri, read_bytes
from cnnlens.audit.store import AuditStore
from cnnlens.models.loaded import LoadedModel

logger = logging.getLogger("cnnlens.audit")
_READ_THREADS = 8
LOOPBACK = "127.0.0.1"  # a Ray started here listens on this machine only


def execute_on_ray(
    store: AuditStore,
    job_id: str,
    config: AuditConfig,
    watch: Watch = Watch(),
    address: str | None = None,
    shape: ReplicaShape = ReplicaShape(),
    model: LoadedModel | None = None,
) -> AuditRun:
    """Analyze the job's pending images on Ray (connecting to `address`, or the running
    instance, or a new local one on loopback); this process writes every result into the
    store. `model` ships a model made in this process to the replicas (else each loads
    `config.model`)."""
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        where: dict[str, Any] = (
            {"address": address} if address else {"address": "local", "_node_ip_address": LOOPBACK}
        )
        ray.init(
            **where, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING
        )
    try:
        portable = PortableModel.of(model) if model is not None else None

        def analyze(pending: Iterable[AuditItem]) -> Iterator[list[ImageOutcome]]:
            return _analyze_on_ray(pending, config, shape, portable)

        return run_batches(store, job_id, analyze, watch)
    finally:
        if started_here:
            ray.shutdown()


def _analyze_on_ray(
    pending: Iterable[AuditItem],
    config: AuditConfig,
    shape: ReplicaShape,
    model: PortableModel | None,
) -> Iterator[list[ImageOutcome]]:
    """Batches of outcomes, as replicas finish them (bounded in flight: flat driver memory)."""
    pool: ReplicaPool | None = None
    with ThreadPoolExecutor(_READ_THREADS, thread_name_prefix="cnnlens-audit-read") as readers:
        try:
            for shipped, failed in read_with_ray_data(
                pending, config.batch_size, lambda batch: ship(batch, readers)
            ):
                if failed:
                    yield failed
                if not shipped:
                    continue
                if pool is None:
                    pool = ReplicaPool(config, shape, model)
                while pool.full():
                    yield from _nonempty(pool.next_done())  # [] when a replica started
                pool.submit(shipped)
            while pool is not None and pool.busy():
                yield from _nonempty(pool.next_done())
        finally:
            if pool is not None:
                pool.close()


def _nonempty(outcomes: list[ImageOutcome]) -> Iterator[list[ImageOutcome]]:
    if outcomes:
        yield outcomes


def ship(
    batch: list[AuditItem], readers: ThreadPoolExecutor
) -> tuple[list[AuditItem], list[ImageOutcome]]:
    """The batch as it travels: each item's bytes (and its mask's), no path a worker could
    open; images that cannot be read become error rows here."""
    read = list(readers.map(_read_item, batch))
    shipped = [item for item in read if isinstance(item, AuditItem)]
    failed = [outcome for outcome in read if isinstance(outcome, ImageOutcome)]
    return shipped, failed


def _read_item(item: AuditItem) -> AuditItem | ImageOutcome:
    try:
        data = read_bytes(item.path)
    except OSError as error:
        where = item.name if is_uri(item.path) else "the file"
        return error_outcome(item, f"cannot read {where}: {type(error).__name__}")
    return carrying(item, data)
