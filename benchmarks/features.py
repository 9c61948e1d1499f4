"""The dataset view's cost, as ratios against baselines run in the same process.

1. audit: an audit of `--images` crops of scikit-image photos (efficientnet_lite0, grad_cam,
   batch 8) with the feature space on, against the same audit with it off (--no-features);
   target: at most 10 % more time. A short warm-up audit first (torch's kernels, UMAP's
   compiled functions). By default in parts (see `audit_overhead`); --direct: whole audits
   off and on in turn, `--repeats` times, the medians compared.
2. scale: `--vectors` synthetic vectors (D = 1280, 200 clusters, labels over 100 classes of a
   1000-class model) written into an audit store, then the audit's end (index, neighbours,
   map, clusters, near-duplicates, label issues) run in a fresh process: its peak RSS (the
   kernel's VmHWM; target at most 2 GB) and each stage's time.
3. query: in that process, one neighbour query of the saved index (exact), and of IVF
   indexes of the same vectors (their recall@10 measured against exact search), against one
   forward of efficientnet_lite0 on one 224 x 224 image, taken in turn, one thread each, in
   the thread's CPU time; target: a query at most 1 % of a forward.

    python -m benchmarks.features [--images 2000] [--vectors 100000] [--skip-audit]
        [--skip-scale] [--direct [--repeats 1]] [--out benchmarks/results/features]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results" / "features"
DIMENSIONS = 1280
CLASSES = 1000
LABELLED_CLASSES = 100


def _crops(folder: Path, count: int, seed: int = 0) -> Path:
    """`count` seeded crops (30-90 % of each side) of scikit-image's colour photos, JPEG."""
    from PIL import Image
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    photos = [
        Image.fromarray(getattr(data, name)()).convert("RGB")
        for name in ("chelsea", "coffee", "astronaut", "rocket", "hubble_deep_field",
                     "immunohistochemistry", "colorwheel", "retina")
    ]  # fmt: skip
    rng = np.random.default_rng(seed)
    for index in range(count):
        photo = photos[index % len(photos)]
        scale = rng.uniform(0.3, 0.9)
        width, height = int(photo.width * scale), int(photo.height * scale)
        left = int(rng.integers(0, photo.width - width + 1))
        top = int(rng.integers(0, photo.height - height + 1))
        crop = photo.crop((left, top, left + width, top + height))
        crop.thumbnail((320, 320))
        crop.save(folder / f"crop{index:05d}.jpg", quality=90)
    return folder


def audit_overhead(images: int, repeats: int, direct: bool) -> dict[str, Any]:
    """The feature space's share of an audit of `images` crops.

    In parts (the default; a busy machine's load drifts over minutes, so whole audits run one
    after the other compare badly): the per-batch work (taps, hashes) as the ratio of the
    analyzer's batches with and without it, taken in turn on the same batches, in the
    process's CPU time; then one whole audit with the feature space, whose end (index,
    neighbours, map...) the audit times itself; the audit without it is that audit's time less
    its end, divided by the per-batch ratio. `direct`: whole audits off and on in turn,
    `repeats` times.
    """
    from cnnlens.audit import AuditConfig, run_audit
    from cnnlens.models import load_model

    work = Path(tempfile.mkdtemp(prefix="cnnlens-bench-features-"))
    model = load_model("efficientnet_lite0")
    source = _crops(work / "in", images)
    warm = _crops(work / "warm", 48, seed=1)
    run_audit(warm, work / "warm-out", AuditConfig(), model=model)  # kernels, UMAP compiled
    if direct:
        return _whole_audits(source, work, model, repeats)
    per_batch = _batch_share(model, source, min(images, 256))
    started = time.perf_counter()
    run = run_audit(source, work / "out", AuditConfig(), model=model)
    total = time.perf_counter() - started
    assert run.job.status == "done"
    summary = json.loads((work / "out" / "summary.json").read_text())["summary"]["features"]
    end = sum(summary["elapsed_s"].values())
    off = (total - end) / per_batch["ratio"]  # the same audit without the feature space
    return {
        "images": images,
        "method": "parts",
        "batch_ratio": per_batch,
        "seconds_on": [round(total, 2)],
        "seconds_off_estimated": [round(off, 2)],
        "ratio": round(total / off, 4),
        "end_stages_s": summary["elapsed_s"],
        "end_s": round(end, 2),
    }


def _batch_share(model: Any, source: Path, count: int, batch: int = 8) -> dict[str, Any]:
    """Seconds of the analyzer's batches with and without the feature capture, each batch
    run by both in turn (which first alternates)."""
    from cnnlens.audit.analyze import AuditAnalyzer
    from cnnlens.audit.config import AuditConfig
    from cnnlens.audit.records import AuditItem

    paths = sorted(source.iterdir())[:count]
    items = [AuditItem(i, p.name, str(p), label=None) for i, p in enumerate(paths)]
    analyzers = {
        enabled: AuditAnalyzer(model, AuditConfig(features={"enabled": enabled}))
        for enabled in (False, True)
    }
    seconds = {False: 0.0, True: 0.0}
    cpu = {False: 0.0, True: 0.0}
    for position, start in enumerate(range(0, len(items), batch)):
        chunk = items[start : start + batch]
        order = (False, True) if position % 2 == 0 else (True, False)
        for enabled in order:
            started, started_cpu = time.perf_counter(), time.process_time()
            analyzers[enabled](chunk)
            seconds[enabled] += time.perf_counter() - started
            cpu[enabled] += time.process_time() - started_cpu
    return {
        "images": len(items),
        "seconds_off": round(seconds[False], 2),
        "seconds_on": round(seconds[True], 2),
        "wall_ratio": round(seconds[True] / seconds[False], 4),
        "cpu_seconds_off": round(cpu[False], 2),
        "cpu_seconds_on": round(cpu[True], 2),
        "ratio": round(cpu[True] / cpu[False], 4),  # CPU time: the machine's load aside
    }


def _whole_audits(source: Path, work: Path, model: Any, repeats: int) -> dict[str, Any]:
    from cnnlens.audit import AuditConfig, run_audit

    times: dict[bool, list[float]] = {False: [], True: []}
    stages: dict[str, float] = {}
    for repeat in range(repeats):
        for enabled in (False, True):
            out = work / f"out-{enabled}-{repeat}"
            started = time.perf_counter()
            run_audit(source, out, AuditConfig(features={"enabled": enabled}), model=model)
            times[enabled].append(time.perf_counter() - started)
            if enabled:
                summary = json.loads((out / "summary.json").read_text())["summary"]["features"]
                stages = summary["elapsed_s"]
    off, on = statistics.median(times[False]), statistics.median(times[True])
    return {
        "images": len(list(source.iterdir())),
        "method": "whole audits",
        "seconds_off": [round(t, 2) for t in times[False]],
        "seconds_on": [round(t, 2) for t in times[True]],
        "ratio": round(on / off, 4),
        "end_stages_s": stages,
        "end_s": round(sum(stages.values()), 2),
    }


def write_store(folder: Path, count: int, seed: int = 0) -> tuple[Path, str]:
    """An audit store holding `count` analyzed images with synthetic vectors (clustered),
    random perceptual hashes and probabilities; returns (out dir, job id)."""
    from cnnlens.audit.records import AuditItem, ImageOutcome
    from cnnlens.audit.store import AuditStore, store_path
    from cnnlens.features.columns import ImageFeatures, pending_columns

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(200, DIMENSIONS)).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    store = AuditStore(store_path(folder))
    labels = rng.integers(0, LABELLED_CLASSES, count)
    items = [
        AuditItem(i, f"img{i:06d}.jpg", f"/nonexistent/img{i:06d}.jpg", int(labels[i]))
        for i in range(count)
    ]
    job_id = "bench" + "0" * 11
    store.create_job(
        job_id, source="synthetic", out_dir=str(folder), signature="bench", config={}, items=items
    )
    page = 2048
    for start in range(0, count, page):
        rows = range(start, min(count, start + page))
        cluster = rng.integers(0, 200, len(rows))
        vectors = centres[cluster] + rng.normal(size=(len(rows), DIMENSIONS)).astype(np.float32)
        logits = rng.normal(size=(len(rows), CLASSES)).astype(np.float32)
        logits[np.arange(len(rows)), labels[start : start + len(rows)]] += 4.0
        probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        outcomes = []
        for row, index in enumerate(rows):
            predicted = int(probabilities[row].argmax())
            record = {
                "index": index, "name": items[index].name, "status": "ok", "error": None,
                "label": int(labels[index]), "label_name": str(labels[index]),
                "predicted": predicted, "predicted_name": str(predicted),
                "confidence": float(probabilities[row].max()),
                "correct": predicted == int(labels[index]), "flags": [], "maps": {},
                "predictions": [], **pending_columns(),
            }  # fmt: skip
            features = ImageFeatures(
                vector=vectors[row],
                phash=int(rng.integers(0, 2**63)),
                probabilities=probabilities[row].astype(np.float16),
            )
            outcomes.append(ImageOutcome(index, record, features=features))
        store.save_outcomes(job_id, outcomes)
    store.set_status(job_id, "done")
    store.close()
    return folder, job_id


def probe(folder: Path, job_id: str, index_exact_max: int) -> dict[str, Any]:
    """In a fresh process: the audit's end on the store, its peak RSS, then the queries."""
    import torch  # a driver has torch loaded: count it in

    from benchmarks.memory import _high_water_mark_bytes, _reset_high_water_mark, rss_bytes
    from cnnlens.audit.store import AuditStore, store_path
    from cnnlens.features.config import FeatureConfig
    from cnnlens.features.dataset import analyze_dataset
    from cnnlens.features.store import FeatureStore

    torch.set_num_threads(2)
    store = AuditStore(store_path(folder))
    config = FeatureConfig(index_exact_max=index_exact_max)
    before = rss_bytes()
    _reset_high_water_mark()
    started = time.perf_counter()
    analyze_dataset(store, job_id, folder, config)
    elapsed = time.perf_counter() - started
    peak = _high_water_mark_bytes()
    summary = FeatureStore(store).summary(job_id) or {}
    store.close()
    return {
        "rss_before_mb": round(before / 2**20, 1),
        "peak_rss_mb": round(peak / 2**20, 1),
        "increase_mb": round((peak - before) / 2**20, 1),
        "seconds": round(elapsed, 1),
        "stages_s": summary.get("elapsed_s"),
        "index": summary.get("index"),
        "map": summary.get("map"),
        "clusters": len(summary.get("clusters") or []),
        "label_issues": summary.get("label_issues"),
        "queries": queries(folder),
    }


def queries(folder: Path, rounds: int = 100) -> dict[str, Any]:
    """One query of the saved exact index, and of IVF indexes of the same vectors (the one
    cnnlens builds past index_exact_max, and the same probing fewer lists), each with its
    recall@10 against exact search, against one forward of efficientnet_lite0 on one
    224 x 224 image; taken in turn (A B C ...), medians compared. One thread each (torch and
    faiss), timed in CPU time of the thread: on a shared machine, wall time measures the
    queue for the cores as much as the work."""
    import faiss
    import torch

    from cnnlens.features.dataset import SAMPLE_MAX
    from cnnlens.features.index import (
        INDEX_FILE,
        NeighbourIndex,
        exact_search,
        normalized,
        recall,
    )
    from cnnlens.models import load_model

    exact = NeighbourIndex.load(folder / INDEX_FILE)
    count = exact.count
    vectors = _reconstruct(exact, count)
    rng = np.random.default_rng(1)
    sample = vectors[rng.choice(count, min(count, SAMPLE_MAX), replace=False)]
    pages = [
        (np.arange(s, min(count, s + 4096)), vectors[s : s + 4096]) for s in range(0, count, 4096)
    ]
    ivf = NeighbourIndex.build(pages, count, vectors.shape[1], exact_max=0, sample=sample)
    probe_queries = normalized(vectors[rng.choice(count, 1000, replace=False)])
    truth = exact_search(probe_queries, pages, 10)
    inner = faiss.downcast_index(ivf.index.index)
    probes = sorted({int(inner.nprobe), 4})
    recalls = {}
    for probe in probes:
        inner.nprobe = probe
        recalls[probe] = round(recall(ivf.search(probe_queries, 10)[0], truth), 4)
    model = load_model("efficientnet_lite0")
    x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    timings: dict[str, list[float]] = {"forward": [], "exact": []}
    timings.update({f"ivf{probe}": [] for probe in probes})

    def forward() -> None:
        with torch.no_grad():
            model.module(x)

    def ivf_query(query: np.ndarray, probe: int) -> None:
        inner.nprobe = probe
        ivf.search(query, 6)

    for _ in range(3):
        forward()
    for round_ in range(rounds):
        query = vectors[round_ : round_ + 1]
        calls = [("forward", forward), ("exact", lambda q=query: exact.search(q, 6))]
        calls += [(f"ivf{p}", lambda q=query, p=p: ivf_query(q, p)) for p in probes]
        for name, call in calls:
            started = time.thread_time()
            call()
            timings[name].append((time.thread_time() - started) * 1000)
    median = {name: statistics.median(values) for name, values in timings.items()}
    return {
        "forward_ms": round(median["forward"], 3),
        "exact_query_ms": round(median["exact"], 3),
        "exact_ratio": round(median["exact"] / median["forward"], 5),
        "ivf": [
            {
                "lists": int(inner.nlist),
                "probe": probe,
                "recall_at_10": recalls[probe],
                "query_ms": round(median[f"ivf{probe}"], 3),
                "ratio": round(median[f"ivf{probe}"] / median["forward"], 5),
            }
            for probe in probes
        ],
        "torch_threads": torch.get_num_threads(),
    }


def _reconstruct(index: Any, count: int) -> np.ndarray:
    """The unit vectors held by a flat index, in id order (ids 0..count-1 here)."""
    import faiss

    inner = faiss.downcast_index(index.index.index)
    return faiss.rev_swig_ptr(inner.get_xb(), count * inner.d).reshape(count, inner.d).copy()


def scale(count: int, index_exact_max: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="cnnlens-bench-scale-"))
    started = time.perf_counter()
    folder, job_id = write_store(work / "out", count)
    written = time.perf_counter() - started
    command = [sys.executable, "-m", "benchmarks.features", "--probe", str(folder), job_id,
               str(index_exact_max)]  # fmt: skip
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}  # freed buffers leave the RSS
    result = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    found: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    found["vectors"] = count
    found["store_written_s"] = round(written, 1)
    return found


def markdown(results: dict[str, Any]) -> str:
    rows = ["| measurement | value | target | met |", "|---|---|---|---|"]
    audit = results.get("audit")
    if audit:
        rows.append(
            f"| audit of {audit['images']} images, features on / off ({audit['method']}) | "
            f"{audit['ratio']:.3f}x ({statistics.median(audit['seconds_on']):.1f} vs "
            f"{statistics.median(audit.get('seconds_off') or audit['seconds_off_estimated']):.1f}"
            f" s; the end {audit['end_s']:.1f} s) | <= 1.10x | "
            f"{'met' if audit['ratio'] <= 1.10 else 'not met'} |"
        )
    found = results.get("scale")
    if found:
        peak = found["peak_rss_mb"]
        rows.append(
            f"| peak RSS, index + map + findings of {found['vectors']} vectors (D = 1280) | "
            f"{peak:.0f} MB ({found['increase_mb']:.0f} MB over {found['rss_before_mb']:.0f}) "
            f"| <= 2048 MB | {'met' if peak <= 2048 else 'not met'} |"
        )
        query = found["queries"]
        rows.append(
            f"| one exact query / one forward ({found['vectors']} vectors) | "
            f"{query['exact_ratio']:.2%} ({query['exact_query_ms']:.2f} vs "
            f"{query['forward_ms']:.1f} ms CPU) | <= 1% | "
            f"{'met' if query['exact_ratio'] <= 0.01 else 'not met'} |"
        )
        for ivf in query["ivf"]:
            rows.append(
                f"| one IVF query / one forward ({ivf['lists']} lists, {ivf['probe']} probed, "
                f"recall@10 {ivf['recall_at_10']}) | {ivf['ratio']:.2%} ({ivf['query_ms']:.2f}"
                f" ms) | <= 1% | {'met' if ivf['ratio'] <= 0.01 else 'not met'} |"
            )
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=1, help="--direct: rounds of off, on")
    parser.add_argument("--direct", action="store_true", help="whole audits off and on")
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--index-exact-max", type=int, default=200_000)
    parser.add_argument("--skip-audit", action="store_true")
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--probe", nargs=3, metavar=("DIR", "JOB", "EXACT_MAX"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.probe:
        folder, job_id, exact_max = args.probe
        print(json.dumps(probe(Path(folder), job_id, int(exact_max))))
        return
    from cnnlens.heap import reuse_heap

    reuse_heap()
    results: dict[str, Any] = {"load_average_before": os.getloadavg()}
    if not args.skip_scale:
        results["scale"] = scale(args.vectors, args.index_exact_max)
        print(json.dumps(results["scale"], indent=1), flush=True)
    if not args.skip_audit:
        results["audit"] = audit_overhead(args.images, args.repeats, args.direct)
        print(json.dumps(results["audit"], indent=1), flush=True)
    results["load_average_after"] = os.getloadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(results, indent=1))
    table = markdown(results)
    (args.out / "latest.md").write_text("# cnnlens benchmark: features\n\n" + table)
    print(table)


if __name__ == "__main__":
    main()
