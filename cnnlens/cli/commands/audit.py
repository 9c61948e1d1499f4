"""Audit a model over a folder, a zip/tar archive, a CSV list or a URI prefix (s3://, gs://,
abfs://, file://) of images: per image the top-k predictions, whether they are right (with
--labels), the maps, and flags (misclassified, low confidence, explanation off the object,
fragile, degenerate map), and the feature space: each image's nearest images, near-duplicates,
likely wrong labels, clusters and a 2-D map (--no-features turns it off). Writes a
self-contained index.html, results.jsonl, results.csv, features.parquet, features.faiss and
overlays/*.png to --out (default: audit-<input name> in the current folder), and keeps its
progress in audit.sqlite there: run the same command again after an interruption and it
resumes. An output folder that holds another audit's report is refused (choose another --out,
or --replace).

labels CSV: `filename,label` (class index or name); boxes CSV: `filename,x0,y0,x1,y1` (pixels).

examples:
  cnnlens audit photos/ --labels labels.csv --out audit/
  cnnlens audit photos.zip --method grad_cam saliency --boxes boxes.csv --fragility
  cnnlens audit photos/ --engine ray --ray-address auto
  cnnlens audit s3://bucket/photos --engine ray --ray-address 10.0.0.5:6379 --out audit-photos/
  cnnlens audit photos/ --labels labels.csv --server http://127.0.0.1:8000 --out audit/
  cnnlens audit photos/ --exemplars blocks.3 --map pca
  cnnlens neighbors query.jpg --audit audit/
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cnnlens.api.forms import DEFAULT_METHOD, split_list
from cnnlens.cli.commands._common import DEFAULT_MODEL, UsageError, add_server_options, echo

HELP = "audit a model over a folder or archive of images; write an HTML report and tables"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path", metavar="PATH", help="folder, .zip/.tar archive, CSV list or URI prefix (s3://...)"
    )
    parser.add_argument(
        "--labels",
        type=Path,
        metavar="CSV",
        help="filename,label rows; a detector's: filename,label,x0,y0,x1,y1, one per object",
    )
    parser.add_argument("--boxes", type=Path, metavar="CSV", help="filename,x0,y0,x1,y1 rows")
    parser.add_argument("--masks", type=Path, metavar="DIR", help="object masks named as images")
    parser.add_argument(
        "--out", "-o", type=Path, help="output folder (default: ./audit-<input name>)"
    )
    parser.add_argument(
        "--replace", action="store_true", help="write into an --out that holds another audit"
    )
    parser.add_argument("--model", help=f"model (default: {DEFAULT_MODEL} / the server's default)")
    parser.add_argument("--weights", default="default", help="'default', 'none' or a weights file")
    parser.add_argument(
        "--method", "-m", dest="methods", nargs="+", action="extend", metavar="M",
        help="heatmap methods, repeated or comma-separated (default: grad_cam)",
    )  # fmt: skip
    parser.add_argument("--layer", "-l", help="target layer (default: the model's)")
    parser.add_argument("--batch-size", type=int, default=8, metavar="N")
    parser.add_argument("--top-k", type=int, default=5, metavar="K")
    parser.add_argument(
        "--score-threshold", type=float, metavar="S",
        help="detectors, locally: the score a detection needs to count (default 0.5)",
    )  # fmt: skip
    parser.add_argument(
        "--low-confidence", type=float, default=0.5, metavar="P",
        help="flag a top-1 probability below P (default 0.5)",
    )  # fmt: skip
    parser.add_argument(
        "--min-box-energy", type=float, default=0.5, metavar="S",
        help="flag maps with less than this share of their energy on the object (default 0.5)",
    )  # fmt: skip
    parser.add_argument(
        "--fragility", action="store_true",
        help="find the smallest PGD epsilon that flips each prediction (slow)",
    )  # fmt: skip
    parser.add_argument(
        "--epsilons", metavar="E,E", help="PGD epsilon ladder, whole 0-255 levels (default 1,2,4,8)"
    )
    features = parser.add_argument_group("feature space (see docs/guides/feature-space.md)")
    features.add_argument(
        "--no-features", dest="features", action="store_false",
        help="keep no feature vectors: no map, neighbours, near-duplicates, label issues",
    )  # fmt: skip
    features.add_argument(
        "--feature-layer", metavar="L",
        help="layer whose (pooled) output is the feature vector (default: the classifier's input)",
    )  # fmt: skip
    features.add_argument(
        "--map", choices=("umap", "pca", "tsne"), default="umap", help="2-D map (default umap)"
    )
    features.add_argument(
        "--exemplars", metavar="LAYER", action="append", default=[],
        help="keep each channel's top-k images of LAYER (repeatable): exemplars.json + sheets",
    )  # fmt: skip
    features.add_argument(
        "--exemplars-k", type=int, default=9, metavar="K", help="exemplars per channel (default 9)"
    )
    features.add_argument(
        "--index-exact-max", type=int, default=200_000, metavar="N",
        help="past N images the neighbour index is IVF, its recall@10 measured (default 200000)",
    )  # fmt: skip
    parser.add_argument("--engine", choices=("local", "ray"), default="local")
    parser.add_argument("--ray-address", metavar="ADDR", help="Ray cluster (default: local)")
    parser.add_argument(
        "--fresh", action="store_true", help="start a new audit instead of resuming one"
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar or summary")
    add_server_options(parser)


def _config(args: argparse.Namespace) -> Any:
    from pydantic import ValidationError

    from cnnlens.audit import AuditConfig

    values: dict[str, Any] = {
        "model": args.model or DEFAULT_MODEL,
        "weights": args.weights,
        "methods": split_list(args.methods) or [DEFAULT_METHOD],
        "layer": args.layer,
        "batch_size": args.batch_size,
        "top_k": args.top_k,
        "low_confidence": args.low_confidence,
        "min_box_energy": args.min_box_energy,
        "fragility": args.fragility,
        "score_threshold": args.score_threshold,
        "features": {
            "enabled": args.features,
            "layer": args.feature_layer,
            "map": args.map,
            "exemplars": args.exemplars,
            "exemplars_k": args.exemplars_k,
            "index_exact_max": args.index_exact_max,
        },
    }
    try:
        if args.epsilons:
            values["epsilons"] = [float(value) for value in split_list([args.epsilons])]
        return AuditConfig.model_validate(values)
    except (ValidationError, ValueError) as error:
        raise UsageError(f"invalid audit options: {error}") from None


def run(args: argparse.Namespace) -> int:
    from cnnlens.audit.sources import MissingFilesystemError, filesystem, is_uri

    uri = is_uri(args.path)
    source: Path | str = args.path if uri else Path(args.path)
    if not uri and not Path(source).exists():
        raise UsageError(f"no such file or folder: {source}")
    if uri:
        try:
            filesystem(args.path)
        except MissingFilesystemError as error:
            raise UsageError(str(error)) from None
    for option in ("labels", "boxes"):
        path = getattr(args, option)
        if path is not None and not path.is_file():
            raise UsageError(f"--{option}: no such file: {path}")
    if args.masks is not None and not args.masks.is_dir():
        raise UsageError(f"--masks: no such folder: {args.masks}")
    config = _config(args)
    args.out = args.out or default_out(args.path)
    if args.server:
        if uri:
            raise UsageError("a server audits an uploaded folder or archive, not a URI")
        from cnnlens.cli.commands._audit_remote import run_remote

        return run_remote(args, Path(source), config)
    return _run_local(args, source, config)


def default_out(path: str) -> Path:
    """audit-<input name>: one output folder per input, in the current folder."""
    import re

    from cnnlens.audit.sources import is_uri

    where = path.partition("://")[2] if is_uri(path) else str(Path(path).absolute())
    name = where.rstrip("/").rpartition("/")[2]
    for suffix in (".gz", ".bz2", ".xz", ".tar", ".tgz", ".zip", ".csv"):
        name = name.removesuffix(suffix)
    name = re.sub(r"[^\w.-]", "_", name).strip(".")
    return Path(f"audit-{name or 'input'}")


def _run_local(args: argparse.Namespace, source: Path | str, config: Any) -> int:
    from cnnlens.audit import run_audit
    from cnnlens.audit.engine import OutputInUseError
    from cnnlens.audit.extras import MissingExtraError, require_ray
    from cnnlens.audit.ray_engine import RayConnectionError

    try:
        if args.engine == "ray":
            require_ray()
        result = run_audit(
            source, args.out, config, labels=args.labels, boxes=args.boxes, masks=args.masks,
            engine=args.engine, resume=not args.fresh, exclusive=not args.replace,
            ray_address=args.ray_address, progress=False if args.quiet else None,
        )  # fmt: skip
    except (MissingExtraError, OutputInUseError, RayConnectionError) as error:
        hint = " (or --replace)" if isinstance(error, OutputInUseError) else ""
        raise UsageError(error.message + hint) from None
    job = result.job
    if not args.quiet:
        _print_summary(result.outputs, job, result.processed)
    return 0 if job.status == "done" else 1


def _print_summary(outputs: dict[str, Path], job: Any, processed: int) -> None:
    import json

    summary_path = outputs.get("summary.json")
    summary = json.loads(summary_path.read_text("utf-8"))["summary"] if summary_path else {}
    accuracy = summary.get("accuracy")
    resumed = job.total - processed
    echo(
        f"audit {job.id}: {job.status}, {summary.get('images', job.total)} images "
        f"({processed} analyzed now, {resumed} already done), {summary.get('errors', 0)} "
        f"unreadable, {summary.get('flagged', 0)} flagged"
        + (
            f", accuracy {accuracy:.1%} of {summary['labelled']} labelled"
            if accuracy is not None
            else ""
        )
    )
    unmatched = summary.get("labels_without_image") or {}
    if unmatched.get("count"):
        names = ", ".join(unmatched["names"][:5])
        more = ", ..." if unmatched["count"] > 5 else ""
        echo(f"{unmatched['count']} labels rows name no image: {names}{more}", error=True)
    features = summary.get("features")
    if isinstance(features, dict):
        _print_features(features)
    report = outputs.get("index.html")
    if report is not None:
        echo(f"report: {report}")
        echo(f"results: {outputs['results.jsonl']}, {outputs['results.csv']}")


def _print_features(features: dict[str, Any]) -> None:
    """The feature space in two lines: its cards (near-duplicates, label issues, map, index)
    and the worst-classified cluster, where the model fails as a group."""
    from cnnlens.features.report import summary_cards

    cards = summary_cards(features)
    echo("feature space: " + "; ".join(f"{name} {value}" for name, value in cards))
    worst = next((c for c in features.get("clusters") or [] if c.get("accuracy") is not None), None)
    if worst is not None:
        labels = ", ".join(f"{item['name']} ({item['count']})" for item in worst["top_labels"])
        echo(
            f"worst cluster: {worst['cluster']}, {worst['size']} images, accuracy "
            f"{worst['accuracy']:.1%} of {worst['labelled']} labelled: {labels}"
        )
