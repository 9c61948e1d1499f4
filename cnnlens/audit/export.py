"""The audit's files: index.html, results.jsonl, results.csv, results.parquet (with pyarrow),
summary.json, overlays/*.png."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Literal, TextIO

from cnnlens.audit.files import open_atomic, write_atomic
from cnnlens.audit.parquet import PARQUET, ParquetRows, parquet_available
from cnnlens.audit.records import OPTIONAL_COLUMNS, AuditRecord, MapFindings
from cnnlens.audit.report import EMBEDDED_ROWS, write_report
from cnnlens.audit.report_views import OverlayLink, ThumbnailLink
from cnnlens.audit.store import AuditStore
from cnnlens.audit.summary import ClassMeans, SummaryBuilder
from cnnlens.features.columns import neighbors_text
from cnnlens.features.store import FeatureStore

REPORT, JSONL, CSV, SUMMARY, OVERLAYS = (
    "index.html", "results.jsonl", "results.csv", "summary.json", "overlays",
)  # fmt: skip
CSV_COLUMNS = (
    "index", "name", "status", "error", "label", "label_name", "predicted", "predicted_name",
    "confidence", "correct", "flags", "box_energy", "pointing_hit", "fragile_epsilon", "overlays",
)  # fmt: skip
CSV_HEADER = CSV_COLUMNS + OPTIONAL_COLUMNS


def overlay_filename(index: int, name: str, method: str) -> str:
    """A unique, safe file name under overlays/ for one image and method."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(name).stem)[:60] or "image"
    return f"{OVERLAYS}/{index:05d}_{stem}_{method}.png"


def write_outputs(store: AuditStore, job_id: str, out_dir: Path) -> dict[str, Path]:
    """Rebuild the report and result tables from the store (all atomically), streaming: the
    records are read a page at a time, so that memory stays flat however many images."""
    job = store.job(job_id)
    if job is None:
        raise KeyError(job_id)
    methods = job.config.get("methods") or []
    paths = {name: out_dir / name for name in (REPORT, JSONL, CSV, SUMMARY)}
    parquet = parquet_available()
    if parquet:
        paths[PARQUET] = out_dir / PARQUET
    facts, means = SummaryBuilder(unmatched_labels=job.unmatched_labels), ClassMeans()
    with ExitStack() as files:
        jsonl = io.TextIOWrapper(files.enter_context(open_atomic(paths[JSONL])), "utf-8")
        table = io.TextIOWrapper(files.enter_context(open_atomic(paths[CSV])), "utf-8", newline="")
        table.write(export_header("csv"))
        columns = (
            files.enter_context(ParquetRows(files.enter_context(open_atomic(paths[PARQUET]))))
            if parquet
            else None
        )
        for record, mean_map in store.iter_records(job_id, with_maps=True):
            facts.add(record)
            means.add(record, mean_map)
            jsonl.write(export_line(record, methods, "jsonl"))
            table.write(export_line(record, methods, "csv"))
            if columns is not None:
                columns.add(record)
        jsonl.detach()  # flushed; the atomic file itself is closed (and renamed) by its context
        table.detach()
    summary = with_features(facts.result(), store, job_id)
    write_atomic(paths[SUMMARY], json.dumps({"job": job.as_dict(), "summary": summary}, indent=2))
    with open_atomic(paths[REPORT]) as raw:
        sink = io.TextIOWrapper(raw, "utf-8")
        _write_report(sink, store, job_id, summary, facts, means)
        sink.detach()
    return paths


def report_html(
    store: AuditStore,
    job_id: str,
    records: Sequence[AuditRecord | Mapping[str, Any]] | None = None,
    summary: Mapping[str, Any] | None = None,
    overlay_link: OverlayLink | None = None,
    thumbnail_link: ThumbnailLink | None = None,
) -> str:
    """The HTML report from what the store holds now (also for a job still running); the
    rows are always read from the store, `records` and `summary` only spare a pass over it.
    `overlay_link`: where rows link their overlays (a service's route; default: the files next
    to the report); `thumbnail_link`: where rows past the embedded ones find a thumbnail (a
    service's route; default: none)."""
    job = store.job(job_id)
    unmatched = job.unmatched_labels if job is not None else []
    facts, means = SummaryBuilder(unmatched_labels=unmatched), ClassMeans()
    if records is None:
        for record, mean_map in store.iter_records(job_id, with_maps=True):
            facts.add(record)
            means.add(record, mean_map)
    else:
        maps = store.mean_maps(job_id)
        for given in map(AuditRecord.of, records):
            facts.add(given)
            means.add(given, maps.get(given.index))
    sink = io.StringIO()
    summary = with_features(facts.result(), store, job_id) if summary is None else summary
    _write_report(sink, store, job_id, summary, facts, means, overlay_link, thumbnail_link)
    return sink.getvalue()


def with_features(summary: dict[str, Any], store: AuditStore, job_id: str) -> dict[str, Any]:
    """The summary with the dataset view's (clusters, near-duplicates, label issues, map,
    index), once the audit's end has built it."""
    found = FeatureStore(store).summary(job_id)
    return {**summary, "features": found} if found is not None else summary


def _write_report(
    sink: TextIO,
    store: AuditStore,
    job_id: str,
    summary: Mapping[str, Any],
    facts: SummaryBuilder,
    means: ClassMeans,
    overlay_link: OverlayLink | None = None,
    thumbnail_link: ThumbnailLink | None = None,
) -> None:
    job = store.job(job_id)
    if job is None:
        raise KeyError(job_id)
    write_report(
        sink,
        job={
            **job.as_dict(),
            "updated": job.updated,
            "min_box_energy": job.config.get("min_box_energy"),
        },
        summary=summary,
        facts=facts,
        rows=store.iter_report_rows(job_id, EMBEDDED_ROWS),
        class_means=means.result(),
        overlay_link=overlay_link,
        thumbnail_link=thumbnail_link,
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


ExportFormat = Literal["jsonl", "csv"]


def export_header(form: ExportFormat) -> str:
    """What an export starts with: the CSV's header line (JSONL has none)."""
    return _csv_line(CSV_HEADER) if form == "csv" else ""


def export_line(
    row: AuditRecord | Mapping[str, Any], methods: Sequence[str], form: ExportFormat
) -> str:
    """One image as a line of a JSONL or CSV export, formula-leading text neutralized: every
    export (the audit's files, the REST results, what `cnnlens audit --server` saves) is
    written line by line by this function."""
    record = AuditRecord.of(row)
    if form == "jsonl":
        return json.dumps(neutralized(record.to_json())) + "\n"
    return _csv_line(csv_row(record, methods))


def records_text(
    records: Iterable[AuditRecord | Mapping[str, Any]], methods: Sequence[str], form: ExportFormat
) -> str:
    """A whole JSONL or CSV export."""
    lines = (export_line(record, methods, form) for record in records)
    return export_header(form) + "".join(lines)


def records_jsonl(records: Iterable[AuditRecord | Mapping[str, Any]]) -> str:
    """One JSON object per line."""
    return records_text(records, (), "jsonl")


def records_csv(records: Iterable[AuditRecord | Mapping[str, Any]], methods: Sequence[str]) -> str:
    """One row per image; localization columns from the first method."""
    return records_text(records, methods, "csv")


def _csv_line(cells: Sequence[Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(cells)
    return buffer.getvalue()


def csv_row(record: AuditRecord, methods: Sequence[str]) -> list[Any]:
    """One image's CSV cells (CSV_HEADER), formula-leading text neutralized."""
    first = record.maps.get(methods[0] if methods else "", MapFindings())
    row = {
        **record.to_json(),
        "flags": ";".join(record.flags),
        "box_energy": first.box_energy,
        "pointing_hit": first.pointing_hit,
        "overlays": ";".join(record.overlays.values()),
        "neighbors": neighbors_text(record),
    }
    return ["" if row.get(column) is None else neutralized(row[column]) for column in CSV_HEADER]
