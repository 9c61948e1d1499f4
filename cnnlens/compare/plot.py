"""The benchmark's figure: one bar panel per score, one bar per method with a ±std error bar."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

from PIL import Image, ImageDraw

from cnnlens.compare.options import LOWER_IS_BETTER
from cnnlens.errors import InvalidParamsError

if TYPE_CHECKING:
    from cnnlens.compare.benchmark import Summary

PALETTE = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c")
_PANEL_W, _PANEL_H, _TOP, _BOTTOM, _LEFT = 230.0, 200.0, 30.0, 20.0, 10.0

Shape = tuple[str, Any]  # (kind, data), drawn by either back end


@dataclass
class _Bar:
    slot: int
    mean: float
    std: float


def bar_chart(summary: Summary, image_format: str = "svg") -> bytes:
    """Bar charts, one panel per score on its own scale (AUCs lie in [0, 1], complexity up to
    ln N), one bar per method with a ±std error bar. `image_format`: "svg" or "png"."""
    if image_format not in ("svg", "png"):
        raise InvalidParamsError(f"plot format must be svg or png, got {image_format!r}")
    names = summary.score_names
    if not names:
        raise InvalidParamsError("nothing to plot: no scores were computed")
    methods = summary.methods
    width = int(_LEFT + _PANEL_W * len(names))
    height = int(_TOP + _PANEL_H + _BOTTOM + 18 * len(methods) + 10)
    shapes: list[Shape] = []
    for panel, name in enumerate(names):
        bars = [
            _Bar(slot, stat.mean, stat.std)
            for slot, method in enumerate(methods)
            if (stat := summary.stats[method][name]).n
        ]
        shapes += _panel(panel, name, bars, len(methods))
    for slot, method in enumerate(methods):
        y = _TOP + _PANEL_H + _BOTTOM + 18 * slot
        shapes.append(("rect", (_LEFT, y, _LEFT + 12, y + 12, PALETTE[slot % len(PALETTE)])))
        shapes.append(("text", (_LEFT + 18, y, method, "#000000")))
    return _svg(shapes, width, height) if image_format == "svg" else _png(shapes, width, height)


def _panel(panel: int, name: str, bars: list[_Bar], methods: int) -> list[Shape]:
    """One score's panel: its title, zero line, ticks at 0, half and the top, and its bars."""
    top = max([1.0, *(b.mean + b.std for b in bars)])  # AUCs and similarities are <= 1
    low = min([0.0, *(b.mean - b.std for b in bars)])  # rank correlations can be negative
    x0 = _LEFT + panel * _PANEL_W

    def y_of(value: float) -> float:
        return _TOP + _PANEL_H * (top - value) / (top - low)

    arrow = "lower is better" if name in LOWER_IS_BETTER else "higher is better"
    shapes: list[Shape] = [
        ("text", (x0 + 10, 6, f"{name} ({arrow})", "#000000")),
        ("line", (x0 + 30, y_of(0), x0 + _PANEL_W - 10, y_of(0), "#000000")),
    ]
    for tick in sorted({0.0, top / 2, top} | ({low} if low < 0 else set())):
        shapes.append(("text", (x0, y_of(tick) - 6, f"{tick:.2g}", "#444444")))
    bar_w = (_PANEL_W - 50) / max(1, methods)
    for bar in bars:
        left = x0 + 35 + bar.slot * bar_w
        y_top, y_zero = sorted((y_of(bar.mean), y_of(0)))
        colour = PALETTE[bar.slot % len(PALETTE)]
        shapes.append(("rect", (left + 2, y_top, left + bar_w - 2, y_zero, colour)))
        centre = left + bar_w / 2
        low_end, high_end = y_of(bar.mean - bar.std), y_of(bar.mean + bar.std)
        shapes.append(("line", (centre, low_end, centre, high_end, "#000000")))
    return shapes


def _svg(shapes: list[Shape], width: int, height: int) -> bytes:
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


def _png(shapes: list[Shape], width: int, height: int) -> bytes:
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
