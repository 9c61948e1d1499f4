"""A small audit set made of scikit-image photos: seeded crops of four photos, mirrored
crops, resized JPEG-45 copies of some crops, labels with two deliberate flips."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")
CROPS = 6
COPIED = ("chelsea_0", "coffee_1", "astronaut_2", "rocket_3")  # each gets a copy
MIRRORED = ("chelsea_2", "coffee_4")  # a different picture of the same thing
EGYPTIAN_CAT, ESPRESSO = 285, 967
# Confidently right crops whose labels are flipped to the other class.
FLIPPED = {"chelsea_5.png": ESPRESSO, "coffee_3.png": EGYPTIAN_CAT}


@dataclass(frozen=True)
class PhotoSet:
    folder: Path
    labels: Path  # CSV filename,label
    copies: dict[str, str]  # copy file -> original file
    distinct: list[str]  # every file that is not a copy


def copy_of(image: Image.Image, scale: float = 0.6, quality: int = 45) -> Image.Image:
    """Resized (bicubic) and re-compressed as JPEG."""
    small = image.resize(
        (round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC
    )
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def crops(seed: int = 0) -> dict[str, Image.Image]:
    """`name_i` -> a crop covering 60-90 % of each side of the photo, at a seeded place."""
    from skimage import data

    rng = np.random.default_rng(seed)
    found = {}
    for name in PHOTOS:
        photo = Image.fromarray(getattr(data, name)())
        for i in range(CROPS):
            scale = rng.uniform(0.6, 0.9)
            width, height = int(photo.width * scale), int(photo.height * scale)
            left = int(rng.integers(0, photo.width - width + 1))
            top = int(rng.integers(0, photo.height - height + 1))
            found[f"{name}_{i}"] = photo.crop((left, top, left + width, top + height))
    return found


def write_photo_set(folder: Path) -> PhotoSet:
    """The crops as PNG, the mirrored crops, the copies as JPEG; labels for the cat and
    coffee images (two of them flipped)."""
    folder.mkdir(parents=True, exist_ok=True)
    made = crops()
    for name, image in made.items():
        image.save(folder / f"{name}.png")
    for name in MIRRORED:
        ImageOps.mirror(made[name]).save(folder / f"{name}_mirror.png")
    copies = {}
    for name in COPIED:
        copy_of(made[name]).save(folder / f"{name}_copy.jpg", quality=95)
        copies[f"{name}_copy.jpg"] = f"{name}.png"
    rows = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(("chelsea", "coffee")):
            label = EGYPTIAN_CAT if path.name.startswith("chelsea") else ESPRESSO
            rows.append(f"{path.name},{FLIPPED.get(path.name, label)}\n")
    labels = folder.parent / "labels.csv"
    labels.write_text("".join(rows))
    distinct = sorted(p.name for p in folder.iterdir() if p.name not in copies)
    return PhotoSet(folder, labels, copies, distinct)
