"""Archives: regular files extracted; zip-slip, absolute paths, links and oversize refused."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from cnnlens.audit.archive import (
    ArchiveError,
    ArchiveLimits,
    ArchiveTooLargeError,
    CompressionRatioError,
    extract_archive,
)

PNG = b"\x89PNG\r\n\x1a\n"  # an image's signature: what extraction checks before writing
JPEG = b"\xff\xd8\xff\xe0"


def _zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return path


def _tar(path: Path, entries: list[tarfile.TarInfo], data: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for info in entries:
            payload = data.get(info.name)
            archive.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return path


def test_zip_extracts_nested_files(tmp_path: Path) -> None:
    archive = _zip(
        tmp_path / "a.zip",
        {"a/b.png": PNG + b"one", "c.jpg": JPEG + b"two", "d/": b"", "notes.txt": b"text"},
    )
    root = extract_archive(archive, tmp_path / "out")
    assert (root / "a" / "b.png").read_bytes() == PNG + b"one"
    assert (root / "c.jpg").read_bytes() == JPEG + b"two"
    assert not (root / "notes.txt").exists()  # not an image the audit reads: not written


@pytest.mark.parametrize("name", ["../evil.png", "a/../../evil.png", "/etc/evil.png", "C:/x.png"])
def test_zip_escaping_entries_refused(tmp_path: Path, name: str) -> None:
    archive = _zip(tmp_path / "a.zip", {"ok.png": PNG + b"1", name: PNG + b"2"})
    with pytest.raises(ArchiveError) as error:
        extract_archive(archive, tmp_path / "out")
    assert error.value.status == 400
    assert not (tmp_path / "evil.png").exists()
    assert not (tmp_path / "out").exists()  # nothing left half-extracted


def test_zip_symlink_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as archive:
        info = zipfile.ZipInfo("link.png")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(info, "/etc/passwd")
    with pytest.raises(ArchiveError, match="link"):
        extract_archive(path, tmp_path / "out")


def test_tar_links_and_devices_refused(tmp_path: Path) -> None:
    link = tarfile.TarInfo("x.png")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    with pytest.raises(ArchiveError, match="link"):
        extract_archive(_tar(tmp_path / "l.tar.gz", [link], {}), tmp_path / "out")
    hard = tarfile.TarInfo("y.png")
    hard.type, hard.linkname = tarfile.LNKTYPE, "x.png"
    with pytest.raises(ArchiveError, match="link"):
        extract_archive(_tar(tmp_path / "h.tar.gz", [hard], {}), tmp_path / "out")
    fifo = tarfile.TarInfo("z.png")
    fifo.type = tarfile.FIFOTYPE
    with pytest.raises(ArchiveError, match="regular"):
        extract_archive(_tar(tmp_path / "f.tar.gz", [fifo], {}), tmp_path / "out")


def test_tar_slip_refused_and_regular_tar_works(tmp_path: Path) -> None:
    evil = tarfile.TarInfo("../../evil.png")
    evil.size = 3
    with pytest.raises(ArchiveError, match="outside"):
        extract_archive(_tar(tmp_path / "e.tar.gz", [evil], {evil.name: b"bad"}), tmp_path / "o")
    good = tarfile.TarInfo("sub/ok.png")
    good.size = 12
    root = extract_archive(
        _tar(tmp_path / "g.tar.gz", [good], {good.name: PNG + b"good"}), tmp_path / "p"
    )
    assert (root / "sub" / "ok.png").read_bytes() == PNG + b"good"


def test_limits(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "a.zip", {f"{i}.png": PNG + b"x" * 92 for i in range(5)})
    with pytest.raises(ArchiveTooLargeError, match="entries") as error:
        extract_archive(archive, tmp_path / "o1", ArchiveLimits(max_members=4))
    assert error.value.status == 413
    with pytest.raises(ArchiveTooLargeError, match="uncompressed"):
        extract_archive(archive, tmp_path / "o2", ArchiveLimits(max_total_bytes=450))
    with pytest.raises(ArchiveTooLargeError, match="entry"):
        extract_archive(archive, tmp_path / "o3", ArchiveLimits(max_member_bytes=99))
    with pytest.raises(ArchiveTooLargeError, match="archive is"):
        extract_archive(archive, tmp_path / "o4", ArchiveLimits(max_archive_bytes=10))
    with pytest.raises(ArchiveError, match="not a zip or tar"):
        extract_archive(_write(tmp_path / "n.zip", b"plain text"), tmp_path / "o5")


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_names_that_are_not_utf8_or_twice_the_same(tmp_path: Path) -> None:
    latin = tmp_path / "latin.tar"
    with tarfile.open(latin, "w", format=tarfile.GNU_FORMAT, encoding="latin-1") as archive:
        info = tarfile.TarInfo("caf\xe9.png")  # written as latin-1 bytes: not UTF-8
        info.size = len(PNG)
        archive.addfile(info, io.BytesIO(PNG))
    root = extract_archive(latin, tmp_path / "out")
    assert [path.name for path in root.iterdir()] == ["caf\ufffd.png"]  # storable, showable
    twice = tmp_path / "twice.zip"
    with zipfile.ZipFile(twice, "w") as archive, pytest.warns(UserWarning, match="Duplicate"):
        archive.writestr("x.png", PNG + b"one")
        archive.writestr("x.png", PNG + b"two")
    with pytest.raises(ArchiveError, match="two archive entries are named 'x.png'"):
        extract_archive(twice, tmp_path / "out2")
    assert not (tmp_path / "out2").exists()
    bad_utf8 = bytearray(_zip(tmp_path / "u.zip", {"abc.png": PNG}).read_bytes())
    for signature, flags_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = bad_utf8.find(signature)
        bad_utf8[start + flags_at + 1] |= 0x08  # flag bit 11: "the name is UTF-8"
        name = bad_utf8.find(b"abc.png", start)
        bad_utf8[name : name + 3] = b"\xff\xfe\xfd"  # and it is not
    with pytest.raises(ArchiveError, match="cannot read the zip archive"):
        extract_archive(_write(tmp_path / "bad.zip", bytes(bad_utf8)), tmp_path / "out3")


def test_compression_ratio_is_read_from_the_headers(tmp_path: Path) -> None:
    flat = _zip_deflated(tmp_path / "flat.zip", {"flat.png": PNG + bytes(3 * 1024 * 1024)})
    with pytest.raises(CompressionRatioError, match="200:1") as refused:
        extract_archive(flat, tmp_path / "o1")
    assert refused.value.status == 413 and not (tmp_path / "o1").exists()
    small = _zip_deflated(tmp_path / "small.zip", {"small.png": PNG + bytes(512 * 1024)})
    assert (extract_archive(small, tmp_path / "o2") / "small.png").is_file()  # under 1 MiB
    loose = ArchiveLimits(max_compression_ratio=None)
    assert (extract_archive(flat, tmp_path / "o3", loose) / "flat.png").is_file()
    gz = tmp_path / "flat.tar.gz"
    with tarfile.open(gz, "w:gz") as archive:
        info = tarfile.TarInfo("flat.png")
        info.size = len(PNG) + 3 * 1024 * 1024
        archive.addfile(info, io.BytesIO(PNG + bytes(3 * 1024 * 1024)))
    with pytest.raises(CompressionRatioError, match="the compressed archive"):
        extract_archive(gz, tmp_path / "o4")


def _zip_deflated(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return path
