"""Detection boxes drawn on images: overlays and audit thumbnails show what was detected."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from PIL import Image, ImageDraw

HIGHLIGHT = (255, 255, 255)  # the explained detection
OTHER = (255, 214, 0)  # the image's other detections
OUTLINE = (0, 0, 0)  # under every box, so it reads on light and dark images alike


class LabelledBox(Protocol):
    """A box with its label and score (`cnnlens.explain.ClassScore`, read only)."""

    @property
    def label(self) -> str: ...
    @property
    def probability(self) -> float: ...
    @property
    def box(self) -> Sequence[float] | None: ...


def draw_detections(
    image: Image.Image,
    detections: Sequence[LabelledBox],
    highlight: LabelledBox | None = None,
    scale: float = 1.0,
    colour: tuple[int, int, int] = OTHER,
    scores: bool = True,
) -> Image.Image:
    """A copy of `image` with each detection's box and "label score" (or the label alone)
    drawn in `colour`, boxes in the image's pixels before `scale`; `highlight` drawn last,
    thicker and in white."""
    drawn = image.convert("RGB")
    pen = ImageDraw.Draw(drawn)
    width = max(1, round(min(drawn.size) / 160))
    others = [d for d in detections if d.box is not None and not _same(d, highlight)]
    for item in others:
        _box(pen, item, colour, width, scale, scores)
    if highlight is not None and highlight.box is not None:
        _box(pen, highlight, HIGHLIGHT, 2 * width, scale, scores)
    return drawn


def _same(a: LabelledBox, b: LabelledBox | None) -> bool:
    return b is not None and a.label == b.label and a.box == b.box


def _box(
    pen: ImageDraw.ImageDraw,
    item: LabelledBox,
    colour: tuple[int, int, int],
    width: int,
    scale: float,
    scores: bool,
) -> None:
    assert item.box is not None
    x0, y0, x1, y1 = (value * scale for value in item.box)
    pen.rectangle((x0, y0, x1, y1), outline=OUTLINE, width=width + 2)
    pen.rectangle((x0, y0, x1, y1), outline=colour, width=width)
    text = f"{item.label} {item.probability:.2f}" if scores else item.label
    left, top, right, bottom = pen.textbbox((x0, y0), text)
    lift = bottom - top + 2
    anchor_y = y0 - lift if y0 >= lift else y0
    pen.rectangle((x0, anchor_y, x0 + right - left + 4, anchor_y + lift), fill=OUTLINE)
    pen.text((x0 + 2, anchor_y), text, fill=colour)
