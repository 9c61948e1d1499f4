"""Audits past one machine: images/s on a one-node vs a two-node Ray cluster (1 CPU each, on
this machine, loopback) auditing with the default model (efficientnet_lite0, grad_cam, 224×224),
the driver's CPU time per image (the engine's overhead, with a tiny CNN whose compute is
negligible), and the driver's peak RSS writing the outputs of 2 000 vs 20 000 images (or, with
--rss-audit, running a whole local audit of that many synthetic images with the tiny model).

Throughput is the steady state: from the first saved batch to the last one (replica start-up
and the report at the end not counted), the best of `repeats` runs on the same cluster (the
machine may be shared: the best run is the least disturbed).

    python -m benchmarks.audit_scale [--images 96] [--repeats 3] [--skip-rss] [--rss-audit]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.audit.ray_cluster import LocalCluster
from tests.audit.tiny_model import tiny_loaded, write_synthetic


def _timed_audit(source: Path, out: Path, model: Any, **engine: Any) -> tuple[float, float]:
    """(images/s from the first saved batch to the last, driver CPU ms per image)."""
    from cnnlens.audit import AuditConfig, run_audit

    marks: list[tuple[float, float, int]] = []

    def mark(job: Any) -> None:
        marks.append((time.perf_counter(), time.process_time(), job.done))

    run = run_audit(source, out, AuditConfig(model=model.name, batch_size=8), model=model,
                    on_progress=mark, **engine)  # fmt: skip
    assert run.job.status == "done"
    first = next(m for m in marks if m[2] > 0)
    last = marks[-1]
    images = last[2] - first[2]
    return images / (last[0] - first[0]), 1000 * (last[1] - first[1]) / images


def _best(source: Path, work: Path, model: Any, repeats: int, **engine: Any) -> tuple[float, float]:
    runs = [_timed_audit(source, work / f"run{time.monotonic_ns()}", model, **engine)
            for _ in range(repeats)]  # fmt: skip
    return max(rate for rate, _ in runs), min(cpu for _, cpu in runs)


def throughput(images: int = 96, repeats: int = 3) -> dict[str, float]:
    import torch

    from cnnlens.models import load_model

    torch.set_num_threads(1)  # the local engine on one CPU, as each replica
    work = Path(tempfile.mkdtemp(prefix="cnnlens-bench-"))
    source = write_synthetic(work / "in", images)
    model, tiny = load_model("efficientnet_lite0"), tiny_loaded()
    local, _ = _best(source, work, model, repeats)
    figures: dict[str, float] = {"images": images, "local_images_per_s": local}
    for nodes in (1, 2):
        with LocalCluster(worker_cpus=nodes - 1, head_cpus=1) as cluster:
            rate, _ = _best(source, work, model, repeats, engine="ray", ray_address=cluster.address)
            figures[f"ray_{nodes}_node_images_per_s"] = rate
            if nodes == 2:
                _, driver_ms = _best(
                    source, work, tiny, repeats, engine="ray", ray_address=cluster.address
                )
                figures["driver_cpu_ms_per_image"] = driver_ms
    figures["speedup_2_vs_1_node"] = (
        figures["ray_2_node_images_per_s"] / figures["ray_1_node_images_per_s"]
    )
    figures["replica_compute_ms_per_image"] = 1000 / local
    return figures


_RSS_CHILD = """
import resource, sys, tempfile
from pathlib import Path
from cnnlens.audit.export import write_outputs
from cnnlens.audit.records import AuditItem, ImageOutcome
from cnnlens.audit.store import AuditStore
count = int(sys.argv[1]); out = Path(tempfile.mkdtemp())
store = AuditStore(out / "audit.sqlite")
items = [AuditItem(i, f"img{i:06d}.png", "") for i in range(count)]
store.create_job("j", source="s", out_dir=str(out), signature="d", config={"methods": ["grad_cam"]},
                 items=items)
for start in range(0, count, 500):
    store.save_outcomes("j", [ImageOutcome(i, {"index": i, "name": f"img{i:06d}.png",
        "status": "ok", "confidence": 0.5, "predicted": i % 4, "predicted_name": str(i % 4),
        "correct": None, "label": None, "flags": [], "maps": {"grad_cam": {}}},
        thumbnail=bytes(700)) for i in range(start, min(count, start + 500))])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
write_outputs(store, "j", out)
print(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


_RSS_AUDIT_CHILD = """
import resource, sys, tempfile
from pathlib import Path
from cnnlens.audit import AuditConfig, run_audit
from tests.audit.tiny_model import tiny_loaded, write_synthetic
count = int(sys.argv[1]); work = Path(tempfile.mkdtemp())
source = write_synthetic(work / "in", count)
run = run_audit(source, work / "out", AuditConfig(model="tiny", batch_size=32), model=tiny_loaded())
assert run.job.status == "done" and run.job.done == count
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def driver_rss(counts: tuple[int, int] = (2_000, 20_000), audit: bool = False) -> dict[str, float]:
    """Peak RSS (MB) of a process writing the outputs of a finished job of N images, or with
    `audit`, of a whole local audit of N synthetic images with the tiny model."""
    figures: dict[str, float] = {}
    kind = "audit_driver" if audit else "driver"
    for count in counts:
        script = _RSS_AUDIT_CHILD if audit else _RSS_CHILD
        out = subprocess.run([sys.executable, "-c", script, str(count)], check=True,
                             capture_output=True, text=True).stdout.split()  # fmt: skip
        figures[f"{kind}_peak_rss_mb_{count}"] = int(out[-1]) / 1024
    small, large = counts
    figures[f"{kind}_rss_ratio_{large}_vs_{small}"] = (
        figures[f"{kind}_peak_rss_mb_{large}"] / figures[f"{kind}_peak_rss_mb_{small}"]
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--rss-counts", type=int, nargs=2, default=(2_000, 20_000))
    parser.add_argument("--rss-audit", action="store_true", help="a whole audit, tiny model")
    args = parser.parse_args()
    figures: dict[str, float] = {}
    if not args.skip_throughput:
        figures |= throughput(args.images, args.repeats)
    if not args.skip_rss:
        figures |= driver_rss(tuple(args.rss_counts), args.rss_audit)
    print(json.dumps({k: round(v, 3) for k, v in figures.items()}, indent=2))


if __name__ == "__main__":
    main()
