"""The library / CLI entry point: `run_audit(source, out_dir, ...)` in this process or on Ray."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Literal

from cnnlens.audit.analyze import AuditAnalyzer
from cnnlens.audit.config import AuditConfig, check_methods, check_model
from cnnlens.audit.engine import AuditRun, ProgressCallback, Watch, execute, prepare_job
from cnnlens.audit.extras import require_ray
from cnnlens.audit.inputs import Annotations
from cnnlens.audit.sources import is_uri
from cnnlens.audit.store import AuditStore, JobInfo, store_path
from cnnlens.features.capture import prepare_features
from cnnlens.models.loaded import LoadedModel
from cnnlens.models.registry import load_model
from cnnlens.progress import Bar, JobBar, watched


def run_audit(
    source: Path | str,
    out_dir: Path | str,
    config: AuditConfig | None = None,
    *,
    labels: Path | str | None = None,
    boxes: Path | str | None = None,
    masks: Path | str | None = None,
    engine: Literal["local", "ray"] = "local",
    model: LoadedModel | None = None,
    resume: bool = True,
    exclusive: bool = False,
    on_progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    ray_address: str | None = None,
    replicas: int | None = None,
    cpus_per_replica: float = 1.0,
    gpus_per_replica: float | None = None,
    progress: bool | None = None,
) -> AuditRun:
    """Audit a folder, a zip/tar archive, a CSV list or a URI prefix (`s3://bucket/photos`,
    `gs://...`, `abfs://...`, `file:///data/photos`: any pyarrow / fsspec filesystem) of images
    into `out_dir`.

    On Ray (`engine="ray"`) Ray Data's readers read the images (URIs on the cluster, local
    files on this machine's node) and their bytes travel through Ray: the cluster needs no
    shared filesystem. `replicas` model copies (default: as many as the cluster's CPUs or GPUs
    fit), each with `cpus_per_replica` CPUs (and as many torch threads) and `gpus_per_replica`
    GPUs (default: 1 where the cluster has GPUs). `model` is used by either engine (shipped to
    the replicas on Ray). Overlays and maps come back here, and this process writes `out_dir`.

    Writes index.html, results.jsonl, results.csv, summary.json, overlays/*.png and its
    progress (audit.sqlite) to out_dir: the same images and config again resume the job.
    `exclusive`: refuse (OutputInUseError) an `out_dir` holding another audit's report.
    `progress`: bars on stderr for the images and, with `fragility` on the local engine, the
    epsilon ladder's rungs (True / False; None: where someone watches, a terminal or a
    notebook).
    """
    config = config or AuditConfig()
    check_methods(config)
    source, out_dir = source if is_uri(source) else Path(source), Path(out_dir)
    with _cluster(engine, ray_address):
        loaded = model or load_model(
            config.model, weights=config.weights, score_threshold=config.score_threshold
        )
        check_model(config, loaded)  # an unknown layer, a method it cannot serve: before work
        annotations = Annotations.read(labels, boxes, masks)
        out_dir.mkdir(parents=True, exist_ok=True)
        store = AuditStore(store_path(out_dir))
        bars = AuditBars(watched(progress), len(config.epsilons) if config.fragility else 0)
        watch = Watch(bars.following(on_progress), should_stop)
        try:
            job = prepare_job(
                store, source, out_dir, config, annotations, loaded.categories, resume=resume,
                exclusive=exclusive,
            )  # fmt: skip
            prepare_features(store, job.id, loaded, config.features)
            if engine != "ray":
                analyzer = AuditAnalyzer(loaded, config, on_rungs=bars.rungs)
                return execute(store, job.id, analyzer, config.batch_size, watch)
            from cnnlens.audit.ray_engine import execute_on_ray
            from cnnlens.audit.replicas import ReplicaShape

            shape = ReplicaShape(replicas, cpus_per_replica, gpus_per_replica)
            return execute_on_ray(store, job.id, config, watch, ray_address, shape, model)
        finally:
            bars.close()
            store.close()


def _cluster(engine: str, ray_address: str | None) -> AbstractContextManager[None]:
    """Ray, joined before any work (a missing extra or a cluster that cannot be used fails
    at once, with no job made); nothing for the local engine."""
    if engine != "ray":
        return nullcontext()
    require_ray()
    from cnnlens.audit.ray_engine import ray_connected

    return ray_connected(ray_address)


class AuditBars:
    """The audit's progress bars: images done, and fragility rungs (images x epsilons) run or
    skipped after a flip, over the images still to analyze."""

    def __init__(self, enabled: bool, rungs_per_image: int) -> None:
        self.images = JobBar("auditing", "image", enabled)
        self.enabled, self.rungs_per_image = enabled, rungs_per_image
        self.fragility: Bar | None = None

    def following(self, callback: ProgressCallback | None) -> ProgressCallback:
        """A progress callback that moves the bars, then calls `callback`."""

        def update(job: JobInfo) -> None:
            self.images.update(job)
            if self.fragility is None:
                pending = (job.total - job.done) * self.rungs_per_image
                self.fragility = Bar(pending, "fragility", "rung", self.enabled)
            if callback is not None:
                callback(job)

        return update

    def rungs(self, n: int) -> None:
        if self.fragility is not None:
            self.fragility.update(n)

    def close(self) -> None:
        self.images.close()
        if self.fragility is not None:
            self.fragility.close()
