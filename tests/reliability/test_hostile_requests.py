"""Hostile requests over real HTTP: every one gets a clear 4xx (or a 200 where the input is
odd but valid), never a 5xx, and the server stays healthy afterwards."""

from __future__ import annotations

import functools
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.reliability import hostile_images as hostile
from tests.reliability.conftest import LiveServer

Files = list[tuple[str, tuple[str, bytes, str]]]


def png(image: Image.Image, **options: Any) -> bytes:
    return hostile.encode(image, "PNG", **options)


def photo(size: tuple[int, int] = (48, 32)) -> Image.Image:
    rng = np.random.default_rng(size[0] * 7 + size[1])
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


SMALL_PNG = png(photo())


@dataclass
class Case:
    """One hostile explain request and the answers it may get."""

    image: bytes | None = SMALL_PNG
    fields: dict[str, Any] = field(default_factory=dict)  # value or list of values
    statuses: tuple[int, ...] = (400,)
    code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    raw_fields: Files = field(default_factory=list)  # extra multipart parts, sent as given

    def files(self) -> Files:
        files = list(self.raw_fields)
        if self.image is not None:
            files.insert(0, ("image", ("upload.bin", self.image, "application/octet-stream")))
        return files


def cmyk_jpeg() -> bytes:
    return hostile.encode(Image.new("CMYK", (40, 30), (0, 255, 255, 0)), "JPEG")


def palette_png() -> bytes:
    image = photo().convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    image.info["transparency"] = 0
    return png(image, transparency=0)


def exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW: 48x32 stored -> 32x48 displayed
    return hostile.encode(photo(), "JPEG", exif=exif.tobytes())


def _bomb_case(make: Callable[[], bytes]) -> Case:
    return Case(make(), statuses=(413,), code="image_too_large")


def _model_case(name: str) -> Case:
    return Case(fields={"model": name}, statuses=(404,), code="unknown_model")


def many_fields(count: int, name: str = "junk") -> Files:
    return [
        (f"{name}{i}" if name == "junk" else name, ("", b"x", "text/plain")) for i in range(count)
    ]


CASES: dict[str, Callable[[], Case]] = {
    # decompression bombs: headers claiming sizes past the limits, each allowed format
    **{
        f"bomb-{name}": functools.partial(_bomb_case, make)
        for name, make in hostile.CLAIMING_HUGE.items()
    },
    "png-idat-inflating-to-100MB": lambda: Case(
        _png_inflating(100_000_000), statuses=(200,)
    ),  # the decoder stops at the declared size
    "gif-200k-frames": lambda: Case(hostile.gif_frame_bomb(200_000), statuses=(200,)),
    "jpeg-20k-progressive-scans": lambda: Case(
        hostile.jpeg_scan_bomb(20_000, side=64), code="image_too_complex"
    ),
    "png-1x100000": lambda: Case(hostile.png_claiming(1, 100_000), statuses=(413,)),
    "png-100000x1": lambda: Case(hostile.png_claiming(100_000, 1), statuses=(413,)),
    "png-1x4000-real": lambda: Case(png(Image.new("L", (1, 4000), 200)), statuses=(200,)),
    "png-16-bit": lambda: Case(hostile.sixteen_bit_png(), statuses=(200,)),
    "jpeg-cmyk": lambda: Case(cmyk_jpeg(), statuses=(200,)),
    "png-palette-transparent": lambda: Case(palette_png(), statuses=(200,)),
    "jpeg-exif-orientation-6": lambda: Case(exif_rotated_jpeg(), statuses=(200,)),
    "png-0x0": lambda: Case(hostile.png_claiming(0, 0), statuses=(400, 413)),
    "truncated-png": lambda: Case(SMALL_PNG[: len(SMALL_PNG) // 2]),
    "empty-file": lambda: Case(b"", code="empty_image"),
    "svg": lambda: Case(b"<svg xmlns='http://www.w3.org/2000/svg'/>", statuses=(415,)),
    "pdf": lambda: Case(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", statuses=(415,)),
    "gif-magic-then-garbage": lambda: Case(b"GIF89a" + bytes(range(256)) * 4),
    "upload-over-the-limit": lambda: Case(
        b"\x89PNG\r\n\x1a\n" + bytes(21 * 2**20), statuses=(413,)
    ),
    # parameters
    "params-NaN": lambda: Case(fields={"params": '{"grad_cam": {"x": NaN}}'}, statuses=(422,)),
    "params-Infinity": lambda: Case(
        fields={"method": "adversarial", "params": '{"adversarial": {"epsilon": Infinity}}'},
        statuses=(422,),
    ),
    "params-negative-Infinity": lambda: Case(
        fields={"params": '{"adversarial": {"epsilon": -Infinity}}'}, statuses=(422,)
    ),
    "params-1e400": lambda: Case(
        fields={"params": '{"adversarial": {"epsilon": 1e400}}'}, statuses=(422,)
    ),
    "params-huge-json": lambda: Case(
        fields={"params": json.dumps({"grad_cam": {f"k{i}": i for i in range(40_000)}})},
        statuses=(413, 422),
    ),
    "params-nested-100k-deep": lambda: Case(fields={"params": "[" * 100_000}, statuses=(422,)),
    "params-not-an-object": lambda: Case(fields={"params": "[1, 2]"}, statuses=(422,)),
    "params-unknown-method-key": lambda: Case(
        fields={"params": '{"rm -rf /": {}}'}, statuses=(422,)
    ),
    "huge-int-target": lambda: Case(fields={"target": "9" * 5000}, statuses=(422,)),
    "negative-target": lambda: Case(fields={"target": "-1"}, statuses=(422,)),
    "too-many-targets": lambda: Case(
        fields={"target": [str(i) for i in range(17)]}, statuses=(422,)
    ),
    "unknown-label-target": lambda: Case(fields={"target": "\u202enot a class"}, statuses=(422,)),
    "unknown-method": lambda: Case(fields={"method": "__import__('os')"}, statuses=(422,)),
    "34-unknown-methods": lambda: Case(
        fields={"method": ",".join(["m"] * 1 + [f"m{i}" for i in range(33)])}, statuses=(422,)
    ),
    "path-like-output": lambda: Case(fields={"output": "../../etc/passwd"}, statuses=(422,)),
    "path-like-layer": lambda: Case(fields={"layer": "../../etc/passwd"}, statuses=(422,)),
    "png-with-two-methods": lambda: Case(
        fields={"method": "grad_cam,saliency"}, headers={"Accept": "image/png"}, statuses=(406,)
    ),
    # model names can never reach the filesystem or the network
    **{
        f"model-{label}": functools.partial(_model_case, name)
        for label, name in {
            "dotdot": "../../../../etc/passwd",
            "absolute": "/etc/passwd",
            "file-url": "file:///etc/passwd",
            "http-url": "http://127.0.0.1:1/evil.pt",
            "unconfigured-timm": "timm:resnet18",
            "weights-suffix": "efficientnet_lite0=/tmp/evil.pt",
        }.items()
    },
    # multipart floods and malformed bodies
    "10000-multipart-fields": lambda: Case(raw_fields=many_fields(10_000), statuses=(400, 413)),
    "10000-target-fields": lambda: Case(
        raw_fields=many_fields(10_000, "target"), statuses=(400, 413, 422)
    ),
    "1001-files": lambda: Case(
        raw_fields=[("image", (f"{i}.png", b"x", "image/png")) for i in range(1001)],
        statuses=(400, 413),
    ),
    "no-image": lambda: Case(image=None, fields={"model": "efficientnet_lite0"}, statuses=(422,)),
    "non-utf8-field": lambda: Case(
        raw_fields=[("method", ("", b"\xff\xfe\xfa", "text/plain"))], statuses=(400, 422)
    ),
}


def _png_inflating(size: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", 64, 64, 8, 2, 0, 0, 0)
    data = zlib.compress(b"\x00" * size, 9)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


def test_the_suite_is_large() -> None:
    assert len(CASES) + len(RAW_CASES) >= 40


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_explain_request(name: str, http: httpx.Client, live_server: LiveServer) -> None:
    case = CASES[name]()
    fields = {key: value for key, value in case.fields.items()}
    response = http.post("/v1/explain", data=fields, files=case.files(), headers=case.headers)
    assert response.status_code in case.statuses, (response.status_code, response.text[:300])
    if response.status_code >= 400:
        error = response.json()["error"]
        assert error["code"] and error["message"]
        if case.code is not None:
            assert error["code"] == case.code
    else:
        body = response.json()
        assert body["explanations"] and body["predictions"]
    assert live_server.hooks() == 0


def test_exif_orientation_reaches_the_answer(http: httpx.Client) -> None:
    response = http.post("/v1/explain", files={"image": ("r.jpg", exif_rotated_jpeg())})
    assert response.status_code == 200
    assert response.json()["image"] == {"width": 32, "height": 48}  # stored 48x32, turned
    explanation = response.json()["explanations"][0]
    assert (explanation["width"], explanation["height"]) == (32, 48)


# Requests that are hostile below the multipart level: raw bytes on the wire.
RAW_CASES: dict[str, tuple[str, str, dict[str, str], bytes, tuple[int, ...]]] = {
    "json-body-30MB": (
        "POST",
        "/v1/explain",
        {"Content-Type": "application/json"},
        b'{"a": "' + b"x" * (30 * 2**20) + b'"}',
        (413,),
    ),
    "bad-boundary": (
        "POST",
        "/v1/explain",
        {"Content-Type": "multipart/form-data; boundary=xyz"},
        b"--abc\r\nnot a part\r\n--abc--\r\n",
        (400, 422),
    ),
    "no-boundary": (
        "POST",
        "/v1/explain",
        {"Content-Type": "multipart/form-data"},
        b"garbage",
        (400, 422),
    ),
    "path-traversal-in-url": ("GET", "/v1/models/..%2F..%2Fetc%2Fpasswd", {}, b"", (404,)),
    "path-traversal-static": ("GET", "/web/../../../etc/passwd", {}, b"", (404,)),
    "path-traversal-static-encoded": ("GET", "/web/..%2f..%2fpyproject.toml", {}, b"", (404,)),
}


@pytest.mark.parametrize("name", sorted(RAW_CASES))
def test_hostile_raw_request(name: str, http: httpx.Client) -> None:
    method, path, headers, body, statuses = RAW_CASES[name]
    response = http.request(method, path, headers=headers, content=body)
    assert response.status_code in statuses, (response.status_code, response.text[:300])
    if response.headers.get("content-type", "").startswith("application/json"):
        assert "error" in response.json() or response.status_code < 400


def test_server_is_healthy_after_the_suite(http: httpx.Client, live_server: LiveServer) -> None:
    live_server.wait_idle()
    response = http.post("/v1/explain", files={"image": ("p.png", SMALL_PNG)})
    assert response.status_code == 200
    assert live_server.hooks() == 0


def test_audit_archive_with_zip_slip(http: httpx.Client, live_server: LiveServer) -> None:
    if "/v1/audits" not in live_server.app.openapi()["paths"]:
        pytest.skip("POST /v1/audits is not served by this build")
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../../escaped.png", SMALL_PNG)
    response = http.post("/v1/audits", files={"archive": ("a.zip", buffer.getvalue())})
    assert response.status_code == 400, response.text
    assert "outside the archive" in response.json()["error"]["message"]
    data_dir = Path(str(live_server.state.settings.data_dir))
    assert not list(data_dir.parent.rglob("escaped.png"))  # nothing written anywhere near


def test_audit_labels_csv_not_utf8(http: httpx.Client, live_server: LiveServer) -> None:
    if "/v1/audits" not in live_server.app.openapi()["paths"]:
        pytest.skip("POST /v1/audits is not served by this build")
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.png", SMALL_PNG)
    labels = "a.png,caf\u00e9 \u00e0 l'\u00e9gyptienne\n".encode("latin-1") + b"\xff\xfe\n"
    response = http.post(
        "/v1/audits",
        files={"archive": ("a.zip", buffer.getvalue()), "labels": ("l.csv", labels)},
    )
    assert response.status_code == 400, response.text
    assert "utf-8" in response.json()["error"]["message"]
