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
