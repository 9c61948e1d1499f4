"""What a notebook shows for results: figures with a legend (`_repr_png_`) and HTML tables
(`_repr_html_`). Torch-free at import, so that the client's results can use it too."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from cnnlens.api.png import png_bytes

if TYPE_CHECKING:
    from cnnlens.api.models import ClassScore
    from cnnlens.explain import Explanation, Explanations

MAX_SIDE = 512  # figures are scaled down to this many pixels a side: light notebooks
CLIP_PERCENTILE = 99.5  # as render.normalize_map: the legend names the scale it uses
_TEXT = (27, 31, 36)
_MUTED = (87, 96, 106)


def font(size: int = 13) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled font (no system font needed)."""
    return ImageFont.load_default(size=size)


def fmt(value: float | None, digits: int = 3) -> str:
    """A score for a table: fixed digits, an em dash where it is undefined."""
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:.{digits}f}"


def class_text(score: ClassScore | Any) -> str:
    """`Egyptian cat (285) 77.3%`; with the pixel share for a segmentation class."""
    text = f"{score.label} ({score.index}) {100 * score.probability:.1f}%"
    share = getattr(score, "pixel_share", None)
    return text if share is None else f"{text}, {100 * share:.1f}% of pixels"


# ---------- HTML ----------


def png_data_uri(image: Image.Image) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")


def html_image(image: Image.Image, alt: str) -> str:
    return f'<img src="{png_data_uri(image)}" alt="{html.escape(alt)}" style="max-width:100%">'


def html_table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], caption: str | None = None
) -> str:
    """A plain table; every cell is text (escaped) unless it starts with `<img `."""

    def cell(tag: str, text: str) -> str:
        body = text if text.startswith("<img ") else html.escape(text)
        return f"<{tag} style='text-align:left;vertical-align:top'>{body}</{tag}>"

    head = "".join(cell("th", h) for h in headers)
    body = "".join("<tr>" + "".join(cell("td", c) for c in row) + "</tr>" for row in rows)
    title = f"<caption style='text-align:left'>{html.escape(caption)}</caption>" if caption else ""
    return f"<table>{title}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def predictions_table(predictions: Sequence[ClassScore]) -> str:
    by_share = any(getattr(p, "pixel_share", None) is not None for p in predictions)
    rows = [
        [
            p.label,
            str(p.index),
            f"{100 * p.probability:.1f}%",
            *([fmt(p.pixel_share, 3)] if by_share else []),
        ]
        for p in predictions
    ]
    headers = ["prediction", "class", "probability", *(["pixel share"] if by_share else [])]
    return html_table(headers, rows)


# ---------- a map's scale and its legend ----------


@dataclass(frozen=True)
class MapScale:
    """How a map is coloured: its range and the value at each end of the colour bar."""

    low: float  # the map's smallest and largest finite values
    high: float
    top: float  # the value the end colour stands for (a robust maximum of |value|)
    signed: bool  # blue negative, red positive around a neutral middle

    @property
    def clipped(self) -> bool:
        return self.top < max(abs(self.low), abs(self.high))


def map_scale(raw: np.ndarray) -> MapScale:
    """The scale `render.normalize_map` colours a raw map with ((C, H, W): max |value|)."""
    array = np.asarray(raw, dtype=np.float32)
    if array.ndim == 3:
        array = array[0] if array.shape[0] == 1 else np.abs(array).max(axis=0)
    finite = array[np.isfinite(array)]
    if finite.size == 0:
        return MapScale(0.0, 0.0, 0.0, False)
    low, high = float(finite.min()), float(finite.max())
    signed = low < 0
    magnitude = np.abs(finite) if signed else finite
    top = float(np.percentile(magnitude, CLIP_PERCENTILE)) or float(magnitude.max())
    return MapScale(low, high, top, signed)


def colour_bar(cmap: str = "jet", width: int = 256, height: int = 10) -> Image.Image:
    from cnnlens.render import colorize  # torch: only where maps are drawn

    row = colorize(np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :], cmap)
    return Image.fromarray(np.repeat(row, height, axis=0))


def legend(scale: MapScale, width: int, cmap: str = "jet") -> Image.Image:
    """A colour bar with the values its ends and middle stand for, and the map's range."""
    small = font(12)
    bar_width = max(64, min(256, width - 8))
    sheet = Image.new("RGB", (width, 44), "white")
    sheet.paste(colour_bar(cmap, bar_width), (4, 2))
    draw = ImageDraw.Draw(sheet)
    top = f"{scale.top:.3g}"
    more = ">= " if scale.clipped else ""
    ends = (
        [(f"{more.replace('>', '<')}-{top}", 0.0), ("0", 0.5), (f"{more}+{top}", 1.0)]
        if scale.signed
        else [("0", 0.0), (f"{more}{top}", 1.0)]
    )
    for text, where in ends:
        length = draw.textlength(text, font=small)
        x = 4 + where * bar_width - where * length
        draw.text((x, 13), text, fill=_TEXT, font=small)
    kind = "signed (blue -, red +)" if scale.signed else "non-negative"
    draw.text(
        (4, 28), f"{kind}, range {scale.low:.3g} .. {scale.high:.3g}", fill=_MUTED, font=small
    )
    return sheet


# ---------- explanations ----------


def fitted(image: Image.Image, side: int = MAX_SIDE) -> Image.Image:
    """The image scaled down (never up) to at most `side` pixels a side."""
    scale = min(1.0, side / max(image.width, image.height))
    if scale >= 1.0:
        return image.convert("RGB")
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.convert("RGB").resize(size, Image.Resampling.BILINEAR)


def explanation_title(explanation: Explanation) -> str:
    parts = [explanation.method]
    if explanation.target is not None:
        parts.append(class_text(explanation.target))
    if explanation.layer:
        parts.append(f"layer {explanation.layer}")
    return " · ".join(parts)


def explanation_figure(
    explanation: Explanation, title: bool = True, side: int = MAX_SIDE
) -> Image.Image:
    """The overlay (scaled to `side`) above its legend, under a title line when asked."""
    picture = fitted(explanation.overlay(), side)
    key = legend(map_scale(explanation.map), max(picture.width, 200))
    heading = 20 if title else 0
    sheet = Image.new("RGB", (max(picture.width, key.width), heading + picture.height + key.height))
    sheet.paste((255, 255, 255), (0, 0, sheet.width, sheet.height))
    if title:
        text = explanation_title(explanation)
        ImageDraw.Draw(sheet).text((4, 3), text, fill=_TEXT, font=font(13))
    sheet.paste(picture, (0, heading))
    sheet.paste(key, (0, heading + picture.height))
    return sheet


def explanation_html(explanation: Explanation) -> str:
    figure = html_image(
        explanation_figure(explanation, title=False), explanation_title(explanation)
    )
    caption = html.escape(explanation_title(explanation))
    return f"<figure style='margin:0'>{figure}<figcaption>{caption}</figcaption></figure>"


def explanations_strip(explanations: Explanations, side: int = 256) -> Image.Image:
    """The photo, then each explanation's overlay with its legend, in one row; the top
    predictions underneath."""
    photo = fitted(explanations.image, side)
    figures = [photo, *(explanation_figure(e, title=False, side=side) for e in explanations)]
    titles = ["image", *(_short_title(e) for e in explanations)]
    gap, heading = 8, 20
    lines = [class_text(p) for p in explanations.predictions[:5]]
    width = sum(f.width for f in figures) + gap * (len(figures) - 1)
    height = heading + max(f.height for f in figures) + 18 * (len(lines) + 1)
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    left = 0
    for figure, text in zip(figures, titles, strict=True):
        sheet.paste(figure, (left, heading))
        draw.text((left + 2, 3), _shorten(draw, text, figure.width - 4), fill=_TEXT, font=font(13))
        left += figure.width + gap
    top = heading + max(f.height for f in figures) + 4
    draw.text((2, top), "predictions:", fill=_MUTED, font=font(12))
    for number, line in enumerate(lines, start=1):
        draw.text((2, top + 18 * number), line, fill=_TEXT, font=font(12))
    return sheet


def explanations_html(explanations: Explanations) -> str:
    """The predictions, then a row per explanation: method, target, layer, overlay, time."""
    rows = [
        [
            e.method,
            class_text(e.target) if e.target is not None else "—",
            e.layer or "—",
            html_image(explanation_figure(e, title=False, side=320), explanation_title(e)),
            f"{e.elapsed_ms:.0f} ms",
        ]
        for e in explanations
    ]
    table = html_table(["method", "target", "layer", "overlay", "time"], rows)
    size = f"{explanations.image.width}×{explanations.image.height}"
    return f"<div><p>Image {size}</p>{predictions_table(explanations.predictions)}{table}</div>"


def _short_title(explanation: Explanation) -> str:
    target = explanation.target
    return explanation.method + ("" if target is None else f" · {target.label}")


def _shorten(draw: ImageDraw.ImageDraw, text: str, width: float) -> str:
    """`text` cut with an ellipsis to fit `width` pixels."""
    small = font(13)
    if draw.textlength(text, font=small) <= width:
        return text
    while text and draw.textlength(text + "…", font=small) > width:
        text = text[:-1]
    return text + "…"


# ---------- comparisons and audits ----------


def score_rows(
    methods: Sequence[str], summary: Mapping[str, Mapping[str, Mapping[str, Any] | Any]]
) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of a summary (method -> score -> mean, std, n), as mean ± std."""
    names: list[str] = []
    for method in methods:
        for name in summary.get(method, {}):
            if name not in names:
                names.append(name)
    rows = []
    for method in methods:
        row = [method]
        for name in names:
            stat = summary.get(method, {}).get(name)
            row.append(_stat_text(stat))
        rows.append(row)
    return ["method", *names], rows


def _stat_text(stat: Mapping[str, Any] | Any) -> str:
    if stat is None:
        return "—"
    values = stat if isinstance(stat, Mapping) else vars(stat)
    mean, std, n = values.get("mean"), values.get("std"), values.get("n")
    if mean is None or not math.isfinite(mean):
        return "—"
    return fmt(mean) if not n or n < 2 else f"{fmt(mean)} ± {fmt(std)} (n={n})"


def comparison_html(
    grid: Image.Image | None,
    methods: Sequence[str],
    summary: Mapping[str, Mapping[str, Any]],
    agreement: Sequence[tuple[str, float | None, float | None]],
    title: str,
) -> str:
    """The grid, the faithfulness scores per method and the maps' agreement."""
    parts = [f"<div><p>{html.escape(title)}</p>"]
    if grid is not None:
        parts.append(html_image(fitted(grid, 1200), "the maps side by side"))
    headers, rows = score_rows(methods, summary)
    if len(headers) > 1:
        caption = "faithfulness: deletion AUC lower is better, insertion AUC higher"
        parts.append(html_table(headers, rows, caption))
    if agreement:
        pairs = [[pair, fmt(rho), fmt(iou)] for pair, rho, iou in agreement]
        parts.append(html_table(["methods", "Spearman", "top-k IoU"], pairs, "agreement"))
    parts.append("</div>")
    return "".join(parts)


def audit_html(summary: Mapping[str, Any], heading: str, report: str | None) -> str:
    """An audit's summary: counts, accuracy, flags, the commonest confusions."""
    accuracy = summary.get("accuracy")
    facts = [
        ["images", str(summary.get("images", 0))],
        ["analyzed", str(summary.get("analyzed", 0))],
        ["unreadable", str(summary.get("errors", 0))],
        ["labelled", str(summary.get("labelled", 0))],
        ["accuracy", "—" if accuracy is None else f"{100 * accuracy:.1f}%"],
        ["flagged", str(summary.get("flagged", 0))],
    ]
    unmatched = summary.get("labels_without_image") or {}
    if unmatched.get("count"):
        shown = ", ".join(unmatched.get("names", []))
        facts.append(["labels rows without an image", f"{unmatched['count']}: {shown}"])
    parts = [f"<div><p>{html.escape(heading)}</p>", html_table(["", ""], facts)]
    flags = [[name, str(n)] for name, n in (summary.get("flag_counts") or {}).items() if n]
    if flags:
        parts.append(html_table(["flag", "images"], flags, "flags"))
    pairs = [
        [p["label_name"], p["predicted_name"], str(p["count"])]
        for p in (summary.get("confusion_pairs") or [])[:5]
    ]
    if pairs:
        parts.append(html_table(["label", "predicted", "images"], pairs, "commonest confusions"))
    if report:
        parts.append(f"<p>report: <code>{html.escape(report)}</code></p>")
    parts.append("</div>")
    return "".join(parts)
