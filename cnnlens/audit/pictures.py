"""The small pictures an audit stores: thumbnails (JPEG) and overlays of bounded size."""

from __future__ import annotations

import io

from PIL import Image


def thumbnail(image: Image.Image, side: int) -> Image.Image:
    """A copy at most `side` pixels a side."""
    small = image.copy()
    small.thumbnail((side, side), Image.Resampling.BILINEAR)
    return small


def bounded(image: Image.Image, side: int) -> Image.Image:
    """The image itself, or a thumbnail when it is larger than `side` a side."""
    return image if max(image.size) <= side else thumbnail(image, side)


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=82)
    return buffer.getvalue()
