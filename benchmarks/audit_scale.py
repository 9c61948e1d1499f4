"""Audits past one machine: images/s on a one-node vs a two-node Ray cluster (1 CPU each, on
this machine, loopback), the per-image overhead against the local engine, and the driver's
peak RSS writing the outputs of 2 000 vs 20 000 images.

    python -m benchmarks.audit_scale [--images 400] [--skip-rss]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.audit.ray_cluster import LocalCluster
from tests.audit.tiny_model import tiny_loaded, write_synthetic


def _timed_audit(source: Path, out: Path, **engine: object) -> float:
    """Seconds from the first saved batch to the end (replica start-up not counted)."""
    from cnnlens.audit import AuditConfig, run_audit

    first: list[float] = []

    def mark(job: object) -> None:
        if not first and getattr(job, "done", 0) > 0:
            first.append(time.perf_counter())

    run = run_audit(source, out, AuditConfig(model="tiny", batch_size=8), model=tiny_loaded(),
                    on_progress=mark, **engine)  # type: ignore[arg-type]  # fmt: skip
    end = time.perf_counter()
    assert run.job.status == "done"
    done_at_first = 8
    return (end - first[0]) * run.job.total / max(1, run.job.total - done_at_first)


def throughput(images: int) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="cnnlens-bench-"))
    source = write_synthetic(work / "in", images)
    local_s = _timed_audit(source, work / "local")
    figures = {"images": images, "local_images_per_s": images / local_s}
    for nodes in (1, 2):
        with LocalCluster(worker_cpus=nodes - 1, head_cpus=1) as cluster:
            seconds = _timed_audit(source, work / f"ray{nodes}", engine="ray",
                                   ray_address=cluster.address)  # fmt: skip
        figures[f"ray_{nodes}_node_images_per_s"] = images / seconds
    figures["speedup_2_vs_1_node"] = (
        figures["ray_2_node_images_per_s"] / figures["ray_1_node_images_per_s"]
    )
    figures["overhead_ms_per_image_1_node"] = 1000 * (
        1 / figures["ray_1_node_images_per_s"] - 1 / figures["local_images_per_s"]
    )
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


def driver_rss() -> dict[str, float]:
    """Peak RSS (MB) of a process writing the outputs of a finished job of N images."""
    figures: dict[str, float] = {}
    for count in (2_000, 20_000):
        out = subprocess.run([sys.executable, "-c", _RSS_CHILD, str(count)], check=True,
                             capture_output=True, text=True).stdout.split()  # fmt: skip
        figures[f"driver_peak_rss_mb_{count}"] = int(out[1]) / 1024
    figures["rss_ratio_20000_vs_2000"] = (
        figures["driver_peak_rss_mb_20000"] / figures["driver_peak_rss_mb_2000"]
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    figures: dict[str, float] = {}
    if not args.skip_throughput:
        figures |= throughput(args.images)
    if not args.skip_rss:
        figures |= driver_rss()
    print(json.dumps({k: round(v, 3) for k, v in figures.items()}, indent=2))


if __name__ == "__main__":
    main()
