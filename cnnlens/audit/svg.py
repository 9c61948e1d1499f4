"""Small inline SVG charts for the audit report: horizontal bars and a stacked histogram."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

_WIDTH = 460


def bar_chart(
    title: str, labels: Sequence[str], values: Sequence[float], *, maximum: float | None = None,
    fmt: str = "{:.0f}", color: str = "#4c78a8",
) -> str:  # fmt: skip
    """One horizontal bar per label, value written at its end."""
    row, left = 18, 170
    top = maximum if maximum is not None else max([*values, 1e-9])
    height = 24 + row * len(labels)
    parts = [
        f'<svg width="{_WIDTH}" height="{height}" role="img" aria-label="{escape(title)}">',
        f'<text x="0" y="14" font-size="13" font-weight="bold">{escape(title)}</text>',
    ]
    span = _WIDTH - left - 50
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = 22 + i * row
        width = 0 if top <= 0 else max(0.0, span * value / top)
        parts.append(
            f'<text x="{left - 4}" y="{y + 12}" font-size="11" text-anchor="end">'
            f"{escape(_clip(label))}</text>"
            f'<rect x="{left}" y="{y + 2}" width="{width:.1f}" height="{row - 5}" fill="{color}">'
            f"<title>{escape(label)}: {escape(fmt.format(value))}</title></rect>"
            f'<text x="{left + width + 4:.1f}" y="{y + 12}" font-size="11">'
            f"{escape(fmt.format(value))}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def stacked_histogram(
    title: str, series: Sequence[tuple[str, str, Sequence[float]]], bins: int = 10
) -> str:
    """Values in [0, 1] binned into `bins`; each series (name, color, values) stacks."""
    counts = [[0] * bins for _ in series]
    for s, (_, _, values) in enumerate(series):
        for value in values:
            counts[s][min(bins - 1, max(0, int(value * bins)))] += 1
    return binned_histogram(
        title,
        [(name, color, column) for (name, color, _), column in zip(series, counts, strict=True)],
        bins,
    )


def binned_histogram(
    title: str, series: Sequence[tuple[str, str, Sequence[int]]], bins: int = 10
) -> str:
    """Counts already binned over [0, 1]; each series (name, color, counts) stacks."""
    counts = [list(column) for _, _, column in series]
    totals = [sum(column) for column in zip(*counts, strict=True)] if series else [0] * bins
    top = max([*totals, 1])
    height, bottom, left = 170, 140, 30
    slot = (_WIDTH - left - 10) / bins
    parts = [
        f'<svg width="{_WIDTH}" height="{height + 20}" role="img" aria-label="{escape(title)}">',
        f'<text x="0" y="14" font-size="13" font-weight="bold">{escape(title)}</text>',
        f'<text x="{left - 4}" y="30" font-size="10" text-anchor="end">{top}</text>',
        f'<line x1="{left}" y1="{bottom}" x2="{_WIDTH - 10}" y2="{bottom}" stroke="#888"/>',
    ]
    scale = (bottom - 28) / top
    for b in range(bins):
        y = float(bottom)
        for (name, color, _), column in zip(series, counts, strict=True):
            if column[b]:
                h = column[b] * scale
                y -= h
                parts.append(
                    f'<rect x="{left + b * slot + 2:.1f}" y="{y:.1f}" width="{slot - 4:.1f}" '
                    f'height="{h:.1f}" fill="{color}"><title>{escape(name)} '
                    f"{b / bins:.1f}-{(b + 1) / bins:.1f}: {column[b]}</title></rect>"
                )
        x = left + b * slot
        parts.append(f'<text x="{x:.1f}" y="{bottom + 13}" font-size="10">{b / bins:.1f}</text>')
    legend_x = left
    for name, color, _ in series:
        parts.append(
            f'<rect x="{legend_x}" y="{bottom + 22}" width="10" height="10" fill="{color}"/>'
            f'<text x="{legend_x + 14}" y="{bottom + 31}" font-size="11">{escape(name)}</text>'
        )
        legend_x += 24 + 7 * len(name)
    parts.append("</svg>")
    return "".join(parts)


def _clip(text: str, length: int = 26) -> str:
    return text if len(text) <= length else text[: length - 1] + "…"
