"""Benchmark mode: scores over a folder of images, as mean ± std per method, in a table
(markdown or CSV) that records the protocol; `cnnlens.compare.plot` draws them."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cnnlens.compare.engine import (
    Comparison,
    ImageComparison,
    Stat,
    compare,
    summarize_scores,
    summary_json,
)
from cnnlens.compare.options import ALIASES, LOWER_IS_BETTER, CompareOptions
from cnnlens.compare.protocol import kernel_text, protocol, protocol_text
from cnnlens.errors import InvalidParamsError
from cnnlens.models.loaded import LoadedModel
from cnnlens.targets import Class

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
PROTOCOL_COLUMNS = ("baseline", "kernel", "steps", "seed")  # on every CSV row


def image_files(paths: Sequence[str | Path]) -> list[Path]:
    """Image files among `paths`; a folder contributes its images (sorted, not recursive)."""
    files: list[Path] = []
    for entry in map(Path, paths):
        if entry.is_dir():
            files.extend(sorted(p for p in entry.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
        else:
            files.append(entry)
    return files


def benchmark(
    model: LoadedModel,
    folder: str | Path | Sequence[str | Path],
    methods: Sequence[str] = ("saliency", "grad_cam", "guided_backprop"),
    target: Class | None = None,
    layer: str | None = None,
    options: CompareOptions | None = None,
    on_image: Callable[[ImageComparison], None] | None = None,
) -> Comparison:
    """`compare` over every image of a folder (or a list of files and folders)."""
    paths = image_files([folder] if isinstance(folder, str | Path) else folder)
    if not paths:
        raise InvalidParamsError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return compare(
        model, [str(p) for p in paths], methods, target=target, layer=layer, options=options,
        names=[p.name for p in paths], on_image=on_image,
    )  # fmt: skip


@dataclass
class Summary:
    """What the tables and plots show, from a Comparison or its JSON (local or remote)."""

    model: str
    options: dict[str, Any]
    protocol: dict[str, Any]
    images: int
    methods: list[str]  # scored methods, "random" included
    score_names: list[str]
    stats: dict[str, dict[str, Stat]]


Report = Comparison | Mapping[str, Any]


def summarize(report: Report) -> Summary:
    """The summary of a Comparison, or of its `to_json()` form (e.g. merged server answers)."""
    if isinstance(report, Comparison):
        return Summary(
            report.model, report.options.model_dump(), report.protocol, len(report.images),
            report.scored, report.score_names, report.summary(),
        )  # fmt: skip
    summary = report.get("summary") or {}
    methods = list(summary)
    names = [name for name in (summary[methods[0]] if methods else ()) if name not in ALIASES]
    stats = {
        method: {
            name: Stat(
                _float(value.get("mean")), _float(value.get("std")), int(value.get("n") or 0)
            )
            for name, value in scores.items()
            if name not in ALIASES
        }
        for method, scores in summary.items()
    }
    options = dict(report.get("options") or {})
    return Summary(
        str(report.get("model", "")), options, dict(report.get("protocol") or _protocol(options)),
        len(report.get("images") or []), methods, names, stats,
    )  # fmt: skip


def merge_reports(reports: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Several `to_json()` answers (one per image or batch) as one, summary recomputed."""
    if not reports:
        raise InvalidParamsError("nothing to merge")
    images = [image for report in reports for image in report.get("images") or []]
    first = summarize(reports[0])
    stats = summarize_scores([image.get("scores") or {} for image in images], first.methods,
                             first.score_names)  # fmt: skip
    return {
        **{k: v for k, v in reports[0].items() if k not in ("images", "summary", "grid_png")},
        "images": images,
        "summary": summary_json(stats),
    }


def summary_rows(report: Report) -> list[dict[str, Any]]:
    """One row per method: for each score its mean, std and number of images."""
    rows: list[dict[str, Any]] = []
    for method, scores in summarize(report).stats.items():
        row: dict[str, Any] = {"method": method}
        for score, stat in scores.items():
            row[f"{score}_mean"], row[f"{score}_std"], row[f"{score}_n"] = (
                stat.mean,
                stat.std,
                stat.n,
            )
        rows.append(row)
    return rows


def to_markdown(report: Report, digits: int = 3) -> str:
    """A markdown table: rows methods, columns scores as `mean ± std` (arrows: better way),
    then the images, model, settings and protocol."""
    summary = summarize(report)
    names = summary.score_names
    header = ["method", *(f"{n} {'↓' if n in LOWER_IS_BETTER else '↑'}" for n in names)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method, scores in summary.stats.items():
        cells = [method]
        for name in names:
            stat = scores[name]
            cells.append(f"{stat.mean:.{digits}f} ± {stat.std:.{digits}f}" if stat.n else "–")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"{summary.images} image(s), model {summary.model}, {_settings(summary.options)}.")
    lines.append(f"Protocol: {protocol_text(summary.protocol)}.")
    return "\n".join(lines) + "\n"


def to_csv(report: Report) -> str:
    """CSV: method, then <score>_mean, <score>_std, <score>_n for each score, then the
    protocol (baseline, kernel, steps, seed) on every row."""
    summary = summarize(report)
    record = summary.protocol
    protocol_cells = {
        "baseline": record.get("baseline", ""),
        "kernel": kernel_text(record) if record else "",
        "steps": record.get("steps", ""),
        "seed": record.get("seed", ""),
    }
    buffer = io.StringIO()
    fields = ["method"] + [
        f"{name}_{part}" for name in summary.score_names for part in ("mean", "std", "n")
    ]
    writer = csv.DictWriter(buffer, fieldnames=[*fields, *PROTOCOL_COLUMNS], lineterminator="\n")
    writer.writeheader()
    for row in summary_rows(report):
        cells = {k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        writer.writerow({**cells, **protocol_cells})
    return buffer.getvalue()


def plot(report: Report, image_format: str = "svg") -> bytes:
    """Bar charts of the summary (see `cnnlens.compare.plot.bar_chart`)."""
    from cnnlens.compare.plot import bar_chart

    return bar_chart(summarize(report), image_format)


def _protocol(options: Mapping[str, Any]) -> dict[str, Any]:
    """The protocol of a report that does not record one (an older server's), from its options."""
    try:
        return protocol(CompareOptions.model_validate(options)) if options else {}
    except ValidationError:
        return {}


def _settings(options: Mapping[str, Any]) -> str:
    parts = [f"{options.get('steps')} steps", f"baseline {options.get('baseline')}"]
    parts.append(f"top-k {options.get('top_k')}")
    if "randomization" in (options.get("scores") or ()):
        parts.append(f"{options.get('stages')} randomized block(s)")
    return ", ".join([*parts, f"seed {options.get('seed')}"])


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)
