"""The same audit on a Ray cluster: Ray Data over the pending images, one model replica per
actor (a GPU each where the cluster has GPUs); results merged into the same store and report."""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from cnnlens.audit.analyze import AuditAnalyzer
from cnnlens.audit.config import AuditConfig
from cnnlens.audit.engine import AuditRun, ProgressCallback, finish, save_outcomes
from cnnlens.audit.export import write_outputs
from cnnlens.audit.inputs import AuditItem
from cnnlens.audit.store import AuditStore


class RayAuditReplica:
    """A callable class for `map_batches`: loads the model once per actor."""

    def __init__(self, config: dict[str, Any]) -> None:
        import torch

        from cnnlens.models.registry import load_model

        self.config = AuditConfig.model_validate(config)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        model = load_model(self.config.model, weights=self.config.weights, device=device)
        self.analyzer = AuditAnalyzer(model, self.config)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from cnnlens.audit.engine import process_robustly

        items = [_item(json.loads(text)) for text in batch["item"]]
        outcomes = process_robustly(self.analyzer, items)
        payloads = np.empty(len(outcomes), dtype=object)
        payloads[:] = [pickle.dumps(outcome) for outcome in outcomes]
        return {"outcome": payloads}


def execute_on_ray(
    store: AuditStore,
    job_id: str,
    config: AuditConfig,
    *,
    on_progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    address: str | None = None,
    replicas: int | None = None,
) -> AuditRun:
    """Analyze the job's pending images on Ray (connecting to `address`, or the running
    instance, or a new local one); this process writes every result into the store."""
    import ray
    import ray.data

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
        ray.data.DataContext.get_current().enable_progress_bars = False  # ours shows progress
    try:
        return _execute(store, job_id, config, on_progress, should_stop, replicas)
    finally:
        if started_here:
            ray.shutdown()


def _execute(
    store: AuditStore,
    job_id: str,
    config: AuditConfig,
    on_progress: ProgressCallback | None,
    should_stop: Callable[[], bool] | None,
    replicas: int | None,
) -> AuditRun:
    import ray
    import ray.data

    store.start_run(job_id)
    job = store.job(job_id)
    assert job is not None
    out_dir = Path(job.out_dir)
    pending = store.pending_items(job_id)
    if on_progress is not None:
        on_progress(job)
    processed = 0
    if pending:
        gpus = int(ray.cluster_resources().get("GPU", 0))
        size = replicas or max(1, min(gpus, len(pending)) if gpus else 1)
        dataset = ray.data.from_items([{"item": json.dumps(asdict(item))} for item in pending])
        results = dataset.map_batches(
            RayAuditReplica,
            fn_constructor_kwargs={"config": config.model_dump(mode="json")},
            batch_size=config.batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=size),
            num_gpus=1 if gpus else 0,
        )
        for batch in results.iter_batches(batch_size=None, batch_format="numpy"):
            outcomes = [pickle.loads(payload) for payload in batch["outcome"]]
            save_outcomes(store, job_id, out_dir, outcomes)
            processed += len(outcomes)
            if on_progress is not None:
                on_progress(store.job(job_id))  # type: ignore[arg-type]
            if store.cancel_requested(job_id) or (should_stop is not None and should_stop()):
                store.set_status(job_id, "cancelled", "cancelled by request")
                final = store.job(job_id)
                assert final is not None
                return AuditRun(final, processed, write_outputs(store, job_id, out_dir))
    return finish(store, job_id, processed)


def _item(data: dict[str, Any]) -> AuditItem:
    data["boxes"] = [tuple(box) for box in data["boxes"]]
    return AuditItem(**data)
