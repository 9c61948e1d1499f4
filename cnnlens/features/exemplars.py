"""Channel exemplars: for each channel of a layer, the audited images that excite it most
(its largest activation anywhere in the image), with the receptive-field box of that
activation: the real-image answer to the seeds' "what does each layer learn" (000, section 3),
beside activation maximization's synthetic one.

Each image's forward keeps, per channel, its largest activation and where it lies (a `Tap`:
(C,) values and positions, nothing else). The top k per channel are merged from the store a
page at a time, so memory is channels x k whatever the image count.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from cnnlens.models.framing import framing_of
from cnnlens.models.hooks import Tap
from cnnlens.models.layers import LayerInfo
from cnnlens.models.loaded import LoadedModel

EXEMPLARS_FILE = "exemplars.json"
EXEMPLARS_DIR = "exemplars"
TILE = 96  # pixels per crop on a sheet


def channel_maxima(activations: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, C, 2): each channel's largest activation and its flat position
    (row * w + column, exact in float32 for any grid under 2^24 cells); (B, C) -> position 0."""
    if activations.dim() == 4:
        flat = activations.flatten(2).float()  # (B, C, h*w)
        values, positions = flat.max(dim=2)
        return torch.stack([values, positions.float()], dim=2)
    flat = activations.flatten(1).float()
    return torch.stack([flat, torch.zeros_like(flat)], dim=2)


def exemplar_tap(layer: str) -> Tap:
    return Tap(f"exemplars:{layer}", layer, channel_maxima)


@dataclass(frozen=True)
class LayerGeometry:
    """What turns a position on a layer's grid into a box on an image."""

    layer: str
    channels: int
    grid_height: int  # 1 x 1 for layers without a spatial grid
    grid_width: int
    receptive_field: int | None  # input pixels; None: the whole input
    input_height: int
    input_width: int
    resize_size: int | None  # the model's center-crop resize (None: the whole image)

    @classmethod
    def of(cls, model: LoadedModel, info: LayerInfo) -> LayerGeometry:
        shape = info.output_shape or [1]
        grid = (shape[1], shape[2]) if len(shape) == 3 else (1, 1)
        height, width = model.input_size
        return cls(
            info.name, int(shape[0]), int(grid[0]), int(grid[1]),
            info.receptive_field if len(shape) == 3 else None, height, width,
            model.preprocessing.resize_size,
        )  # fmt: skip

    def input_box(self, position: int) -> tuple[float, float, float, float]:
        """The receptive field of the unit at `position` in input pixels: centred on the
        unit's cell (the grid spans the input; "same" padding), `receptive_field` wide, clipped
        to the input."""
        if self.receptive_field is None:
            return (0.0, 0.0, float(self.input_width), float(self.input_height))
        row, column = divmod(int(position), self.grid_width)
        centre_x = (column + 0.5) * self.input_width / self.grid_width
        centre_y = (row + 0.5) * self.input_height / self.grid_height
        half = self.receptive_field / 2
        return (
            max(0.0, centre_x - half),
            max(0.0, centre_y - half),
            min(float(self.input_width), centre_x + half),
            min(float(self.input_height), centre_y + half),
        )

    def image_box(self, position: int, width: int, height: int) -> list[int]:
        """[x0, y0, x1, y1] on a width x height image (x1, y1 exclusive)."""
        framing = framing_of(width, height, (self.input_height, self.input_width), self.resize_size)
        return list(framing.box_from_input(self.input_box(position)))

    def as_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> LayerGeometry:
        return cls(**json.loads(text))


class TopK:
    """Each channel's k largest (activation, image, position), merged a page at a time."""

    def __init__(self, channels: int, k: int) -> None:
        self.k = k
        self.values = np.full((channels, 0), -np.inf, np.float32)
        self.images = np.zeros((channels, 0), np.int64)
        self.positions = np.zeros((channels, 0), np.int64)

    def add(self, indices: np.ndarray, values: np.ndarray, positions: np.ndarray) -> None:
        """`indices` (P,) images; `values`, `positions` (P, C)."""
        joined_values = np.concatenate([self.values, values.T.astype(np.float32)], axis=1)
        joined_images = np.concatenate(
            [self.images, np.broadcast_to(indices, (values.shape[1], len(indices)))], axis=1
        )
        joined_positions = np.concatenate([self.positions, positions.T.astype(np.int64)], axis=1)
        # largest first; ties: the earlier image (a stable order over the input)
        order = np.lexsort((joined_images, -joined_values), axis=1)[:, : self.k]
        self.values = np.take_along_axis(joined_values, order, axis=1)
        self.images = np.take_along_axis(joined_images, order, axis=1)
        self.positions = np.take_along_axis(joined_positions, order, axis=1)


def top_k(
    pages: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]], channels: int, k: int
) -> TopK:
    """The top k of each channel over (indices, values, positions) pages."""
    best = TopK(channels, k)
    for indices, values, positions in pages:
        best.add(indices, values, positions)
    return best


def exemplar_entries(
    best: TopK, geometry: LayerGeometry, records: Mapping[int, Mapping[str, Any]]
) -> dict[str, list[dict[str, Any]]]:
    """{channel: [{name, index, activation, box}, ...]} best first; `records` by index."""
    result: dict[str, list[dict[str, Any]]] = {}
    for channel in range(best.values.shape[0]):
        entries = []
        for value, index, position in zip(
            best.values[channel], best.images[channel], best.positions[channel], strict=True
        ):
            record = records.get(int(index))
            if record is None or not np.isfinite(value):
                continue
            box = geometry.image_box(int(position), int(record["width"]), int(record["height"]))
            entries.append(
                {
                    "name": record["name"],
                    "index": int(index),
                    "activation": round(float(value), 6),
                    "box": box,
                }
            )
        result[str(channel)] = entries
    return result


def sheet(crops: list[Image.Image], tile: int = TILE) -> Image.Image:
    """The crops, best first, each scaled into a tile x tile square, in a near-square grid."""
    columns = max(1, math.ceil(math.sqrt(len(crops))))
    rows = max(1, math.ceil(len(crops) / columns))
    canvas = Image.new("RGB", (columns * tile, rows * tile), (255, 255, 255))
    for position, crop in enumerate(crops):
        small = crop.copy()
        small.thumbnail((tile, tile), Image.Resampling.BILINEAR)
        row, column = divmod(position, columns)
        x = column * tile + (tile - small.width) // 2
        y = row * tile + (tile - small.height) // 2
        canvas.paste(small, (x, y))
    return canvas


def sheet_path(out_dir: Path, layer: str, channel: int | str) -> Path:
    """exemplars/<layer>/<channel>.png (layer names are module paths: safe as folders)."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in layer) or "layer"
    return out_dir / EXEMPLARS_DIR / safe / f"{channel}.png"


def crop_jpeg(image: Image.Image, box: list[int]) -> bytes:
    """The box's pixels as a small JPEG (held until the channel's sheet is drawn)."""
    crop = image.crop(tuple(box))  # type: ignore[arg-type]
    crop.thumbnail((TILE, TILE), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    crop.save(buffer, format="JPEG", quality=88)
    return buffer.getvalue()
