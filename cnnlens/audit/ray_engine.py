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
from dataclasses import dataclass
from typing import Any

from cnnlens.audit.config import AuditConfig
from cnnlens.audit.engine import AuditRun, Watch, process_robustly, run_batches
from cnnlens.audit.ray_reader import carrying, read_with_ray_data
from cnnlens.audit.records import AuditItem, ImageOutcome, error_outcome
from cnnlens.audit.sources import is_uri, read_bytes
from cnnlens.audit.store import AuditStore
from cnnlens.models.loaded import LoadedModel

logger = logging.getLogger("cnnlens.audit")
_IN_FLIGHT_PER_REPLICA = 2  # one computing, one arriving: no replica waits on the network
_READ_THREADS = 8
LOOPBACK = "127.0.0.1"  # a Ray started here listens on this machine only


@dataclass
class PortableModel:
    """A LoadedModel without its lock, on the CPU: what travels to the replicas."""

    name: str
    module: Any
    preprocessing: Any
    categories: tuple[str, ...]
    weights_sha256: str | None
    weights_source: str

    @classmethod
    def of(cls, model: LoadedModel) -> PortableModel:
        return cls(
            model.name, model.module.cpu(), model.preprocessing, model.categories,
            model.weights_sha256, model.weights_source,
        )  # fmt: skip

    def load(self, device: str) -> LoadedModel:
        loaded = LoadedModel(
            self.name, self.module, self.preprocessing, self.categories, self.weights_sha256,
            self.weights_source,
        )  # fmt: skip
        return loaded.to(device)


class AuditReplica:
    """One model replica (a Ray actor): analyzes batches whose images come as bytes."""

    def __init__(self, config: dict[str, Any], model: PortableModel | None, cpus: float) -> None:
        import torch

        from cnnlens.audit.analyze import AuditAnalyzer
        from cnnlens.models.registry import load_model

        # torch would start a thread per core of the node: replicas sharing a node would
        # oversubscribe it, each OpenMP team stalling on the others' descheduled threads
        torch.set_num_threads(max(1, int(cpus)))
        self.config = AuditConfig.model_validate(config)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        loaded = (
            model.load(device)
            if model is not None
            else load_model(self.config.model, weights=self.config.weights, device=device)
        )
        self.analyzer = AuditAnalyzer(loaded, self.config)

    def analyze(self, items: list[AuditItem]) -> list[ImageOutcome]:
        return process_robustly(self.analyzer, items)


@dataclass(frozen=True)
class ReplicaShape:
    """How many replicas and what each one holds; None: as many as the cluster fits."""

    replicas: int | None = None
    cpus_per_replica: float = 1.0
    gpus_per_replica: float | None = None  # None: 1 where the cluster has GPUs, else 0

    def resolve(self, resources: dict[str, float]) -> tuple[int, float, float]:
        """(replicas, cpus, gpus) for a cluster with these total resources."""
        gpus_total = resources.get("GPU", 0.0)
        gpus = self.gpus_per_replica if self.gpus_per_replica is not None else (
            1.0 if gpus_total >= 1 else 0.0
        )  # fmt: skip
        cpus = self.cpus_per_replica
        if self.replicas is not None:
            return self.replicas, cpus, gpus
        fits = [resources.get("CPU", 0.0) / cpus] if cpus > 0 else []
        if gpus > 0:
            fits.append(gpus_total / gpus)
        return max(1, int(min(fits) if fits else 1)), cpus, gpus


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
    pool: _ReplicaPool | None = None
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
                    pool = _ReplicaPool(config, shape, model)
                while pool.full():
                    yield pool.next_done()
                pool.submit(shipped)
            while pool is not None and pool.busy():
                yield pool.next_done()
        finally:
            if pool is not None:
                pool.close()


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


class _ReplicaPool:
    """Model replicas as Ray actors; a batch whose replica died runs again on another."""

    def __init__(self, config: AuditConfig, shape: ReplicaShape, model: PortableModel | None):
        import ray

        self.count, cpus, gpus = shape.resolve(ray.cluster_resources())
        self._actor_class = ray.remote(num_cpus=cpus, num_gpus=gpus, max_restarts=0)(AuditReplica)
        self._config = config.model_dump(mode="json")
        self._model = ray.put(model) if model is not None else None
        self._cpus = cpus
        self._actors = [self._start() for _ in range(self.count)]
        self._load: dict[Any, int] = {actor: 0 for actor in self._actors}
        self._in_flight: dict[Any, tuple[Any, list[AuditItem]]] = {}
        logger.info("audit on Ray: %d replicas (%g CPU, %g GPU each)", self.count, cpus, gpus)

    def _start(self) -> Any:
        return self._actor_class.remote(self._config, self._model, self._cpus)

    def full(self) -> bool:
        return len(self._in_flight) >= _IN_FLIGHT_PER_REPLICA * max(1, len(self._actors))

    def busy(self) -> bool:
        return bool(self._in_flight)

    def submit(self, batch: list[AuditItem]) -> None:
        if not self._actors:
            raise RuntimeError("no audit replica is left on the cluster")
        actor = min(self._actors, key=lambda a: self._load[a])
        self._load[actor] += 1
        self._in_flight[actor.analyze.remote(batch)] = (actor, batch)

    def next_done(self) -> list[ImageOutcome]:
        """The next finished batch; a lost replica's batches go to the remaining ones."""
        import ray
        from ray.exceptions import ActorUnavailableError, RayActorError

        while True:
            ready, _ = ray.wait(list(self._in_flight), num_returns=1)
            actor, batch = self._in_flight.pop(ready[0])
            self._load[actor] = max(0, self._load.get(actor, 1) - 1)
            try:
                return list(ray.get(ready[0]))
            except (RayActorError, ActorUnavailableError) as error:
                logger.warning(
                    "audit replica lost (%s); its batch runs again", type(error).__name__
                )
                self._drop(actor)
                self.submit(batch)

    def _drop(self, actor: Any) -> None:
        if actor in self._actors:
            self._actors.remove(actor)
            self._load.pop(actor, None)

    def close(self) -> None:
        import ray

        for actor in self._actors:
            ray.kill(actor)
        self._actors.clear()
