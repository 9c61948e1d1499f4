"""Audit fixtures: a folder of scikit-image photos (small copies) plus one broken file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

EGYPTIAN_CAT = 285
ESPRESSO = 967
BROKEN = "broken.png"


def _small(image: Image.Image, side: int = 256) -> Image.Image:
    copy = image.copy()
    copy.thumbnail((side, side))
    return copy


@pytest.fixture(scope="session")
def astronaut() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut())


def write_photos(
    folder: Path, chelsea: Image.Image, coffee: Image.Image, astronaut: Image.Image
) -> dict[str, tuple[int, int]]:
    """chelsea.png, coffee.png, astronaut.png and a broken PNG; returns the photos' sizes."""
    folder.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for name, image in (("chelsea", chelsea), ("coffee", coffee), ("astronaut", astronaut)):
        small = _small(image)
        small.save(folder / f"{name}.png")
        sizes[f"{name}.png"] = small.size
    (folder / BROKEN).write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # a header, no image
    return sizes


@pytest.fixture
def photos(
    tmp_path: Path, chelsea: Image.Image, coffee: Image.Image, astronaut: Image.Image
) -> Path:
    folder = tmp_path / "photos"
    write_photos(folder, chelsea, coffee, astronaut)
    return folder


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """A Ray instance of this test module's own, on loopback, with 2 CPUs."""
    ray = pytest.importorskip("ray")
    ray.init(
        address="local",
        _node_ip_address="127.0.0.1",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}},
    )
    try:
        yield
    finally:
        ray.shutdown()
