"""Model replicas for the Ray engine: the model as it travels, one replica (a Ray actor), how
many replicas a cluster fits, and the pool that keeps them busy and reruns a lost one's batches."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Any

from cnnlens.audit.config import AuditConfig
from cnnlens.audit.engine import process_robustly
from cnnlens.audit.records import AuditItem, ImageOutcome
from cnnlens.models.loaded import LoadedModel

logger = logging.getLogger("cnnlens.audit")
_IN_FLIGHT_PER_REPLICA = 2  # one computing, one arriving: no replica waits on the network


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
        """The model as it travels: the caller's module itself when on the CPU, else a CPU
        copy (the caller's stays on its device)."""
        module = model.module
        if model.device.type != "cpu":
            module = copy.deepcopy(module).cpu()
        return cls(
            model.name, module, model.preprocessing, model.categories,
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
        from cnnlens.heap import reuse_heap
        from cnnlens.models.registry import load_model

        reuse_heap()
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

    def ready(self) -> bool:
        """Answers once the model is loaded: the replica can take work."""
        return True

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


class ReplicaPool:
    """Model replicas as Ray actors: work goes only to replicas that have started (one slow to
    start holds no batch meanwhile); a batch whose replica died runs again on another."""

    def __init__(self, config: AuditConfig, shape: ReplicaShape, model: PortableModel | None):
        import ray

        self.count, cpus, gpus = shape.resolve(ray.cluster_resources())  # type: ignore[no-untyped-call]
        actor_class = ray.remote(num_cpus=cpus, num_gpus=gpus, max_restarts=0)(AuditReplica)
        shipped = ray.put(model) if model is not None else None
        config_json = config.model_dump(mode="json")
        actors: list[Any] = [
            actor_class.remote(config_json, shipped, cpus) for _ in range(self.count)
        ]
        self._starting: dict[Any, Any] = {actor.ready.remote(): actor for actor in actors}
        self._load: dict[Any, int] = {}  # started replicas -> batches they hold
        self._in_flight: dict[Any, tuple[Any, list[AuditItem]]] = {}
        logger.info("audit on Ray: %d replicas (%g CPU, %g GPU each)", self.count, cpus, gpus)

    def full(self) -> bool:
        return len(self._in_flight) >= _IN_FLIGHT_PER_REPLICA * max(1, len(self._load))

    def busy(self) -> bool:
        return bool(self._in_flight)

    def submit(self, batch: list[AuditItem]) -> None:
        import ray

        while not self._load:  # none started yet: wait for the first
            if not self._starting:
                raise RuntimeError("no audit replica is left on the cluster")
            started, _ = ray.wait(list(self._starting), num_returns=1)
            self._started(started[0])
        actor = min(self._load, key=lambda a: self._load[a])
        self._load[actor] += 1
        self._in_flight[actor.analyze.remote(batch)] = (actor, batch)

    def next_done(self) -> list[ImageOutcome]:
        """The next finished batch, or [] when a replica started first (it can take work now);
        a lost replica's batches go to the remaining ones."""
        import ray
        from ray.exceptions import ActorUnavailableError, RayActorError

        while True:
            ready, _ = ray.wait([*self._in_flight, *self._starting], num_returns=1)
            if ready[0] in self._starting:
                self._started(ready[0])
                return []
            actor, batch = self._in_flight.pop(ready[0])
            try:
                outcomes = list(ray.get(ready[0]))
            except (RayActorError, ActorUnavailableError) as error:
                logger.warning(
                    "audit replica lost (%s); its batch runs again", type(error).__name__
                )
                self._load.pop(actor, None)
                self.submit(batch)
                continue
            self._load[actor] = max(0, self._load.get(actor, 1) - 1)
            return outcomes

    def _started(self, ready_ref: Any) -> None:
        """A replica's start ended: it takes work, or (it died starting) it is left out."""
        import ray
        from ray.exceptions import ActorUnavailableError, RayActorError

        actor = self._starting.pop(ready_ref)
        try:
            ray.get(ready_ref)
        except (RayActorError, ActorUnavailableError) as error:
            logger.warning("an audit replica failed to start (%s)", type(error).__name__)
            return
        self._load[actor] = 0
        logger.info("audit replica started (%d of %d)", len(self._load), self.count)

    def close(self) -> None:
        import ray

        for actor in [*self._load, *self._starting.values()]:
            ray.kill(actor)
        self._load.clear()
        self._starting.clear()
