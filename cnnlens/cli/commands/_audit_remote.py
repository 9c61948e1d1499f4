"""`cnnlens audit PATH --server URL`: the audit runs on a cnnlens service (see audit.py)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cnnlens.cli.commands._common import UsageError, echo, open_client
from cnnlens.features.config import form_options
from cnnlens.progress import JobBar, watched


def run_remote(args: argparse.Namespace, source: Path, config: Any) -> int:
    """Upload the folder (zipped) or archive to POST /v1/audits, follow its progress, then
    download the report and the result tables into --out. Ctrl-C cancels the job."""
    import tempfile
    import time
    from types import SimpleNamespace

    if args.masks is not None or args.engine != "local":
        raise UsageError("--masks and --engine work locally only, not with --server")
    if source.is_file() and source.suffix.lower() == ".csv":
        raise UsageError("with --server, PATH must be a folder or a zip/tar archive")
    if (args.out / "index.html").exists() and not args.replace:
        raise UsageError(f"{args.out} holds another audit's report; choose another --out")
    options = {
        "batch_size": config.batch_size,
        "top_k": config.top_k,
        "low_confidence": config.low_confidence,
        "min_box_energy": config.min_box_energy,
        "fragility": config.fragility,
        **form_options(config.features),
    }
    bar = JobBar("auditing", "image", watched(False if args.quiet else None))
    with tempfile.TemporaryFile() as archive, open_client(args) as client:
        name = _pack(source, archive)
        job = client.submit_audit(
            archive, filename=name, labels=args.labels, boxes=args.boxes, model=args.model,
            methods=list(config.methods), options=options,
        )  # fmt: skip
        try:
            while job["status"] in ("queued", "running"):
                bar.update(SimpleNamespace(**job["progress"]))
                time.sleep(0.5)
                job = client.audit(job["id"])
            bar.update(SimpleNamespace(**job["progress"]))
        except KeyboardInterrupt:
            client.delete_audit(job["id"])
            echo(f"audit {job['id']}: cancelled", error=True)
            raise
        finally:
            bar.close()
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "index.html").write_bytes(client.audit_report(job["id"]))
        for file_name, form in (("results.jsonl", "jsonl"), ("results.csv", "csv")):
            (args.out / file_name).write_bytes(client.audit_results(job["id"], form))
    if not args.quiet:
        progress = job["progress"]
        echo(
            f"audit {job['id']} on {args.server}: {job['status']}, {progress['total']} images, "
            f"{progress['errors']} unreadable"
        )
        echo(f"report: {args.out / 'index.html'}")
    return 0 if job["status"] == "done" else 1


def _pack(source: Path, sink: Any) -> str:
    """A folder's images zipped into `sink`, or an archive copied as it is; the upload name."""
    import shutil
    import zipfile

    if source.is_dir():
        from cnnlens.audit.inputs import scan_images

        with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as archive:
            for name, path in scan_images(source):
                archive.write(path, arcname=name)
        sink.seek(0)
        return f"{source.name or 'images'}.zip"
    with open(source, "rb") as handle:
        shutil.copyfileobj(handle, sink)
    sink.seek(0)
    return source.name
