"""Benchmark mode: scores over a folder of images, as mean ± std per method, a table and a plot."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from PIL import Image, ImageDraw

from cnnlens.compare.engine import (
    LOWER_IS_BETTER,
    Comparison,
    ImageComparison,
    Stat,
    compare,
    summarize_scores,
)
from cnnlens.compare.options import CompareOptions
from cnnlens.errors import InvalidParamsError
from cnnlens.models.loaded import LoadedModel
from cnnlens.targets import Class

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
_PALETTE = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c")


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
    images: int
    methods: list[str]  # scored methods, "random" included
    score_names: list[str]
    stats: dict[str, dict[str, Stat]]


Report = Comparison | Mapping[str, Any]


def summarize(report: Report) -> Summary:
    """The summary of a Comparison, or of its `to_json()` form (e.g. merged server answers)."""
    if isinstance(report, Comparison):
        return Summary(
            report.model, report.options.model_dump(), len(report.images), report.scored,
            report.score_names, report.summary(),
        )  # fmt: skip
    summary = report.get("summary") or {}
    methods = list(summary)
    names = list(summary[methods[0]]) if methods else []
    stats = {
        method: {
            name: Stat(
                _float(value.get("mean")), _float(value.get("std")), int(value.get("n") or 0)
            )
            for name, value in scores.items()
        }
        for method, scores in summary.items()
    }
    return Summary(
        str(report.get("model", "")), dict(report.get("options") or {}),
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
        "summary": {
            method: {
                name: {"mean": _json_number(s.mean), "std": _json_number(s.std), "n": s.n}
                for name, s in scores.items()
            }
            for method, scores in stats.items()
        },
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
    """A markdown table: rows methods, columns scores as `mean ± std` (arrows: better way)."""
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
    return "\n".join(lines) + "\n"


def to_csv(report: Report) -> str:
    """CSV: method, then <score>_mean, <score>_std, <score>_n for each score."""
    rows = summary_rows(report)
    buffer = io.StringIO()
    fields = ["method"] + [
        f"{name}_{part}" for name in summarize(report).score_names for part in ("mean", "std", "n")
    ]
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        )
    return buffer.getvalue()


@dataclass
class _Bar:
    panel: int
    slot: int
    mean: float
    std: float


def plot(report: Report, image_format: str = "svg") -> bytes:
    """Bar charts, one panel per score, one bar per method with a ±std error bar.

    `image_format`: "svg" (text) or "png" (drawn with Pillow).
    """
    if image_format not in ("svg", "png"):
        raise InvalidParamsError(f"plot format must be svg or png, got {image_format!r}")
    summary = summarize(report)
    names = summary.score_names
    if not names:
        raise InvalidParamsError("nothing to plot: no scores were computed")
    methods = summary.methods
    panel_w, panel_h, top, bottom, left = 220.0, 200.0, 30.0, 20.0, 40.0
    legend_h = 18 * len(methods) + 10
    width = int(left + panel_w * len(names))
    height = int(top + panel_h + bottom + legend_h)
    bars: list[_Bar] = []
    for panel, name in enumerate(names):
        for slot, method in enumerate(methods):
            stat = summary.stats[method][name]
            if stat.n:
                bars.append(_Bar(panel, slot, stat.mean, stat.std))
    scale = max([1.0, *(b.mean + b.std for b in bars)])  # AUCs and similarities are <= 1
    low = min([0.0, *(b.mean - b.std for b in bars)])  # rank correlations can be negative

    def y_of(value: float) -> float:
        return top + panel_h * (scale - value) / (scale - low)

    shapes: list[tuple[str, Any]] = []  # (kind, data) drawn by either back end
    bar_w = (panel_w - 40) / max(1, len(methods))
    for panel, name in enumerate(names):
        x0 = left + panel * panel_w
        arrow = "lower is better" if name in LOWER_IS_BETTER else "higher is better"
        shapes.append(("text", (x0 + 10, 6, f"{name} ({arrow})", "#000000")))
        shapes.append(("line", (x0 + 10, y_of(0), x0 + panel_w - 10, y_of(0), "#000000")))
        for tick in (0.0, 0.5, 1.0):
            if low <= tick <= scale and panel == 0:
                shapes.append(("text", (4, y_of(tick) - 6, f"{tick:.1f}", "#444444")))
    for bar in bars:
        x0 = left + bar.panel * panel_w + 20 + bar.slot * bar_w
        colour = _PALETTE[bar.slot % len(_PALETTE)]
        y_top, y_zero = sorted((y_of(bar.mean), y_of(0)))
        shapes.append(("rect", (x0 + 2, y_top, x0 + bar_w - 2, y_zero, colour)))
        centre = x0 + bar_w / 2
        shapes.append(
            (
                "line",
                (centre, y_of(bar.mean - bar.std), centre, y_of(bar.mean + bar.std), "#000000"),
            )
        )
    for slot, method in enumerate(methods):
        y = top + panel_h + bottom + 18 * slot
        colour = _PALETTE[slot % len(_PALETTE)]
        shapes.append(("rect", (left, y, left + 12, y + 12, colour)))
        shapes.append(("text", (left + 18, y, method, "#000000")))
    return _svg(shapes, width, height) if image_format == "svg" else _png(shapes, width, height)


def _svg(shapes: list[tuple[str, Any]], width: int, height: int) -> bytes:
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
    ]
    for kind, data in shapes:
        if kind == "rect":
            x0, y0, x1, y1, colour = data
            parts.append(
                f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{x1 - x0:.1f}" height="{y1 - y0:.1f}" '
                f'fill="{colour}"/>'
            )
        elif kind == "line":
            x0, y0, x1, y1, colour = data
            parts.append(
                f'<line x1="{x0:.1f}" y1="{y0:.1f}" x2="{x1:.1f}" y2="{y1:.1f}" stroke="{colour}"/>'
            )
        else:
            x, y, text, colour = data
            parts.append(
                f'<text x="{x:.1f}" y="{y + 10:.1f}" fill="{colour}">{escape(text)}</text>'
            )
    parts.append("</svg>")
    return "\n".join(parts).encode("utf-8")


def _png(shapes: list[tuple[str, Any]], width: int, height: int) -> bytes:
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    for kind, data in shapes:
        if kind == "rect":
            x0, y0, x1, y1, colour = data
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        elif kind == "line":
            x0, y0, x1, y1, colour = data
            draw.line((x0, y0, x1, y1), fill=colour, width=1)
        else:
            x, y, text, colour = data
            draw.text((x, y), text, fill=colour)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _settings(options: Mapping[str, Any]) -> str:
    parts = [f"{options.get('steps')} steps", f"baseline {options.get('baseline')}"]
    parts.append(f"top-k {options.get('top_k')}")
    if "randomization" in (options.get("scores") or ()):
        parts.append(f"{options.get('stages')} randomized block(s)")
    return ", ".join([*parts, f"seed {options.get('seed')}"])


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def _json_number(value: float) -> float | None:
    return round(value, 6) if math.isfinite(value) else None
