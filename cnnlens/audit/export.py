"""The audit's files: index.html, results.jsonl, results.csv, summary.json, overlays/*.png."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cnnlens.audit.files import write_atomic
from cnnlens.audit.report import render_report
from cnnlens.audit.store import AuditStore
from cnnlens.audit.summary import class_mean_maps, summarize

REPORT, JSONL, CSV, SUMMARY, OVERLAYS = (
    "index.html", "results.jsonl", "results.csv", "summary.json", "overlays",
)  # fmt: skip
CSV_COLUMNS = (
    "index", "name", "status", "error", "label", "label_name", "predicted", "predicted_name",
    "confidence", "correct", "flags", "box_energy", "pointing_hit", "fragile_epsilon", "overlays",
)  # fmt: skip


def overlay_filename(index: int, name: str, method: str) -> str:
    """A unique, safe file name under overlays/ for one image and method."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(name).stem)[:60] or "image"
    return f"{OVERLAYS}/{index:05d}_{stem}_{method}.png"


def write_outputs(store: AuditStore, job_id: str, out_dir: Path) -> dict[str, Path]:
    """Rebuild the report and result tables from the store (all atomically)."""
    job = store.job(job_id)
    if job is None:
        raise KeyError(job_id)
    records = store.records(job_id)
    summary = summarize(records)
    paths = {name: out_dir / name for name in (REPORT, JSONL, CSV, SUMMARY)}
    write_atomic(paths[JSONL], records_jsonl(records))
    write_atomic(paths[CSV], records_csv(records, job.config.get("methods") or []))
    write_atomic(paths[SUMMARY], json.dumps({"job": job.as_dict(), "summary": summary}, indent=2))
    html = report_html(store, job_id, records, summary)
    write_atomic(paths[REPORT], html)
    return paths


def report_html(
    store: AuditStore,
    job_id: str,
    records: Sequence[Mapping[str, Any]] | None = None,
    summary: Mapping[str, Any] | None = None,
) -> str:
    """The HTML report from what the store holds now (also for a job still running)."""
    job = store.job(job_id)
    if job is None:
        raise KeyError(job_id)
    records = store.records(job_id) if records is None else records
    return render_report(
        job={
            **job.as_dict(),
            "updated": job.updated,
            "min_box_energy": job.config.get("min_box_energy"),
        },
        records=records,
        summary=summarize(records) if summary is None else summary,
        thumbnails=store.thumbnails(job_id),
        overlays=store.overlay_thumbnails(job_id),
        class_means=class_mean_maps(records, store.mean_maps(job_id)),
    )


_FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r")


def neutralized(value: Any) -> Any:
    """Text that a spreadsheet would run as a formula, quoted with a leading ' (OWASP CSV
    injection); numbers and everything else unchanged."""
    if isinstance(value, str) and value.startswith(_FORMULA_LEADS):
        return "'" + value
    if isinstance(value, dict):
        return {key: neutralized(item) for key, item in value.items()}
    if isinstance(value, list):
        return [neutralized(item) for item in value]
    return value


def records_jsonl(records: Sequence[Mapping[str, Any]]) -> str:
    """One JSON object per line, formula-leading text neutralized as in the CSV."""
    return "".join(json.dumps(neutralized(record)) + "\n" for record in records)


def records_csv(records: Sequence[Mapping[str, Any]], methods: Sequence[str]) -> str:
    """One row per image; localization columns from the first method."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for record in records:
        first = (record.get("maps") or {}).get(methods[0] if methods else "", {})
        row = {
            **record,
            "flags": ";".join(record.get("flags") or []),
            "box_energy": first.get("box_energy"),
            "pointing_hit": first.get("pointing_hit"),
            "overlays": ";".join((record.get("overlays") or {}).values()),
        }
        writer.writerow(
            ["" if row.get(column) is None else neutralized(row[column]) for column in CSV_COLUMNS]
        )
    return buffer.getvalue()
