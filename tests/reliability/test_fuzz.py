"""Fuzzing: the image decoder under hypothesis (only ImageDecodeError may escape), and every
documented operation under schemathesis over real HTTP (all of its checks)."""

from __future__ import annotations

import os
import warnings
from collections import Counter
from typing import Any

import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from PIL import Image
from schemathesis import GenerationMode

from cnnlens.errors import ImageDecodeError
from cnnlens.imageio import decode_image
from tests.reliability import hostile_images as hostile
from tests.reliability.conftest import LiveServer

MAX_PIXELS, MAX_SIDE = 1_000_000, 2048
# `make fuzz` raises this for a long random run; make test keeps the derandomized CI counts.
SCALE = int(os.environ.get("CNNLENS_FUZZ_SCALE", "1"))
MAGIC = [b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"RIFF\x00\x00\x00\x00WEBP", b"BM", b"GIF89a"]
MAGIC += [b"II*\x00", b"MM\x00*"]


def _seeds() -> list[bytes]:
    rng = np.random.default_rng(11)
    photo = Image.fromarray(rng.integers(0, 255, (12, 17, 3), dtype=np.uint8))
    seeds = [hostile.encode(photo, fmt) for fmt in ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")]
    seeds += [
        hostile.encode(photo, "JPEG", progressive=True),
        hostile.encode(photo.convert("P"), "PNG"),
        hostile.encode(photo.convert("RGBA"), "WEBP", lossless=True),
        hostile.encode(photo.convert("CMYK"), "TIFF"),
        hostile.sixteen_bit_png(),
        hostile.gif_frame_bomb(3),
        hostile.jpeg_scan_bomb(3, side=16),
    ]
    return seeds


SEEDS = _seeds()


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    """A valid small image with bytes overwritten, cut, inserted or header fields patched."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        action = draw(st.sampled_from(["flip", "cut", "insert", "word"]))
        if not data:  # a cut may empty the buffer: only an insert can act on it
            action = "insert"
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if action == "flip":
            data[at] = draw(st.integers(0, 255))
        elif action == "cut":
            del data[at : at + draw(st.integers(1, 64))]
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=32))
        elif at + 4 <= len(data):  # a 32-bit field set to an extreme (sizes, offsets, counts)
            value = draw(st.sampled_from([0, 1, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF]))
            data[at : at + 4] = value.to_bytes(4, draw(st.sampled_from(["little", "big"])))
    return bytes(data)


def _decode_or_refuse(data: bytes) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            image = decode_image(data, max_pixels=MAX_PIXELS, max_side=MAX_SIDE)
        except ImageDecodeError as error:
            assert error.status in (400, 413, 415) and error.code and error.message
            return
    assert isinstance(image, Image.Image) and image.mode == "RGB"
    width, height = image.size
    assert 1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE and width * height <= MAX_PIXELS
    np.asarray(image)  # the pixels are really there


@given(data=mutated_images())
@settings(max_examples=300 * SCALE, deadline=None, suppress_health_check=list(HealthCheck))
def test_mutated_images_decode_or_raise_image_decode_error(data: bytes) -> None:
    _decode_or_refuse(data)


@given(magic=st.sampled_from(MAGIC), tail=st.binary(max_size=512))
@settings(max_examples=150 * SCALE, deadline=None, suppress_health_check=list(HealthCheck))
def test_random_bytes_behind_each_magic_number(magic: bytes, tail: bytes) -> None:
    _decode_or_refuse(magic + tail)


@given(data=st.binary(max_size=64))
@settings(max_examples=100 * SCALE, deadline=None)
def test_arbitrary_bytes(data: bytes) -> None:
    _decode_or_refuse(data)


def test_the_seeds_decode() -> None:
    for seed in SEEDS:
        assert decode_image(seed).size in ((17, 12), (5, 4), (2, 2), (16, 16))


# --- schemathesis over real HTTP ---

SLOW_OPERATIONS = {"POST /v1/activation-max", "POST /v1/adversarial", "POST /v1/audits"}


@pytest.fixture(scope="module")
def live_schema(live_server: LiveServer) -> Any:
    return schemathesis.openapi.from_url(f"{live_server.url}/openapi.json")


def _operations(schema: Any) -> list[Any]:
    return [result.ok() for result in schema.get_all_operations()]


def test_schemathesis_all_checks_over_http(live_schema: Any, live_server: LiveServer) -> None:
    """Every documented operation, positive and negative data, every built-in check but
    positive_data_acceptance: a schema cannot say "a decodable photo" or "a method name
    this registry knows", so schema-valid random values are rightly refused with a 4xx."""
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    operations = _operations(live_schema)
    assert len(operations) >= 12
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            examples = 2 if operation.label in SLOW_OPERATIONS else 5

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))
            def check(case: Any) -> None:
                response = case.call(base_url=live_server.url, timeout=60)
                statuses[response.status_code] += 1
                case.validate_response(
                    response, excluded_checks=[schemathesis.checks.positive_data_acceptance]
                )

            try:
                check()
            except Unsatisfiable:  # no invalid input exists (no parameters, free-form strings)
                assert mode is GenerationMode.NEGATIVE
            except Exception as error:  # collect every operation's failure, report them all
                failures.append(f"{operation.label} ({mode.value}): {str(error)[:800]}")
    live_server.wait_idle()
    assert live_server.hooks() == 0
    assert not failures, "\n\n".join(failures)
    assert sum(statuses.values()) >= 4 * len(operations)  # the cases really went out
    assert not [status for status in statuses if status >= 500], statuses
