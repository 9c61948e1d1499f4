"""The audited images nearest to IMAGE in an audit's feature space (image retrieval): the
image's feature vector, taken with the audit's model at its feature layer, searched in the
index the audit saved (features.faiss). Prints name, distance (1 - cosine), label and
prediction, nearest first; --json prints one JSON list of those objects.

--audit is the audit's output folder, or with --server the audit's job id on that service.

examples:
  cnnlens neighbors query.jpg --audit audit-photos/
  cnnlens neighbors query.jpg --audit audit-photos/ -k 10 --json
  cnnlens neighbors query.jpg --audit 3f2a... --server http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cnnlens.cli.commands._common import UsageError, add_server_options, open_client, print_table

HELP = "find the audited images nearest to an image (the audit's feature space)"
COLUMNS = ("name", "distance", "label_name", "predicted_name")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", metavar="IMAGE", type=Path, help="the image to look up")
    parser.add_argument(
        "--audit", required=True, metavar="DIR",
        help="the audit's output folder (with --server: its job id)",
    )  # fmt: skip
    parser.add_argument("-k", type=int, default=5, metavar="K", help="neighbours (default 5)")
    parser.add_argument("--json", action="store_true", help="print one JSON list")
    add_server_options(parser)


def run(args: argparse.Namespace) -> int:
    if not args.image.is_file():
        raise UsageError(f"no such image file: {args.image}")
    if not 1 <= args.k <= 100:
        raise UsageError("-k must be between 1 and 100")
    found = _remote(args) if args.server else _local(Path(args.audit), args.image, args.k)
    if args.json:
        print(json.dumps(found))
        return 0
    print_table(
        COLUMNS,
        ([entry["name"], f"{entry['distance']:.4f}", entry["label_name"], entry["predicted_name"]]
         for entry in found),
    )  # fmt: skip
    return 0


def _remote(args: argparse.Namespace) -> list[dict[str, Any]]:
    with open_client(args) as client:
        return client.neighbors(args.audit, args.image, k=args.k)


def _local(folder: Path, image: Path, k: int) -> list[dict[str, Any]]:
    from cnnlens.audit.config import AuditConfig
    from cnnlens.audit.store import FINISHED, AuditStore, store_path
    from cnnlens.features.retrieval import index_path, loaded_index, neighbours
    from cnnlens.features.vectors import features
    from cnnlens.models.registry import load_model

    if not store_path(folder).is_file():
        raise UsageError(f"{folder} holds no audit (no {store_path(folder).name})")
    store = AuditStore(store_path(folder))
    try:
        jobs = store.jobs()  # newest first
        finished = [job for job in jobs if job.status in FINISHED] or jobs
        if not finished:
            raise UsageError(f"{folder} holds no audit")
        job = finished[0]
        config = AuditConfig.model_validate(job.config)
        path = index_path(folder, config.features.enabled, job.status)
        model = load_model(config.model, weights=config.weights)
        vector = features(model, [image], layer=config.features.layer)[0]
        return neighbours(loaded_index(path), vector, k, store, job.id)
    finally:
        store.close()
