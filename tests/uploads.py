"""What the tests upload: zip archives made in memory, small PNG copies of photos."""

from __future__ import annotations

import io
import zipfile

from PIL import Image


def zipped(entries: dict[str, bytes]) -> bytes:
    """A zip archive of `entries` (name -> bytes), stored, in memory."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def small_png(image: Image.Image, side: int = 96) -> bytes:
    """A PNG of the image shrunk to fit `side` pixels (cheap to audit)."""
    small = image.copy()
    small.thumbnail((side, side))
    buffer = io.BytesIO()
    small.save(buffer, format="PNG")
    return buffer.getvalue()
