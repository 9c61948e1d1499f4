"""Safe extraction of uploaded zip and tar archives: zip-slip, absolute paths, links and
special files are refused; member count, member size, total uncompressed size and compression
ratio are capped from the headers before anything is written; only images are written, each
checked by its first bytes (its signature) before the rest follows."""

from __future__ import annotations

import shutil
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import IO

from pydantic import BaseModel, ConfigDict, Field

from cnnlens.errors import CnnlensError, ImageDecodeError
from cnnlens.imageio import ALLOWED_FORMATS, sniff_format

_CHUNK = 1 << 20


class ArchiveError(CnnlensError):
    """An archive that is malformed or unsafe to extract."""

    code = "bad_archive"
    status = 400


class ArchiveTooLargeError(ArchiveError):
    code = "archive_too_large"
    status = 413


class QuotaExceededError(ArchiveTooLargeError):
    """The bytes an extraction writes would pass the job's or the data directory's quota."""

    code = "quota_exceeded"
    status = 413


class CompressionRatioError(ArchiveTooLargeError):
    """A member that inflates far beyond what images do: a zip bomb."""

    code = "compression_ratio"
    status = 413


IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
# Members at most this large are not held to the compression ratio: a small flat image may
# deflate far, and what they may write is bounded by their count and the job's quota.
RATIO_FLOOR_BYTES = 1024 * 1024
_HEAD_BYTES = 16  # enough for every image signature sniff_format knows
_COMPRESSED_TAR = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ")  # gzip, bzip2, xz


def is_image_name(relative: PurePosixPath | Path) -> bool:
    """An image an audit reads: an image suffix, no hidden part (".x") and no `__MACOSX`."""
    hidden = any(part.startswith(".") or part == "__MACOSX" for part in relative.parts)
    return not hidden and relative.suffix.lower() in IMAGE_SUFFIXES


class ArchiveLimits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_archive_bytes: int = Field(default=200 * 1024 * 1024, ge=1, description="the archive file")
    max_members: int = Field(default=10_000, ge=1, description="entries in the archive")
    max_member_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1, description="one file, uncompressed"
    )
    max_total_bytes: int = Field(
        default=1024 * 1024 * 1024, ge=1, description="all files, uncompressed: the job's quota"
    )
    max_data_dir_bytes: int | None = Field(
        default=None, ge=1, description="all the jobs' files together (None: no quota)"
    )
    max_compression_ratio: float | None = Field(
        default=200.0,
        ge=1,
        description="uncompressed:compressed size of a member over RATIO_FLOOR_BYTES (zip: "
        "its header; compressed tar: the whole stream), checked before extraction",
    )


def archive_kind(path: Path) -> str | None:
    """ "zip", "tar" or None (not an archive)."""
    if zipfile.is_zipfile(path):
        return "zip"
    try:
        if tarfile.is_tarfile(path):
            return "tar"
    except OSError:
        return None
    return None


def safe_member_path(name: str) -> PurePosixPath:
    """The relative path an entry may be written to, or ArchiveError for anything escaping."""
    text = name.replace("\\", "/")
    if not text or text.startswith("/") or (len(text) > 1 and text[1] == ":"):
        raise ArchiveError(f"archive entry {_short(name)!r} has an absolute path; refused")
    # bytes that are not UTF-8 (an old tar's latin-1 names) become U+FFFD: a name that can be
    # stored, exported and shown
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    parts = [part for part in PurePosixPath(text).parts if part not in ("", ".")]
    if any(part == ".." for part in parts):
        raise ArchiveError(
            f"archive entry {_short(name)!r} points outside the archive (..); refused"
        )
    if not parts:
        raise ArchiveError(f"archive entry {_short(name)!r} has no file name; refused")
    return PurePosixPath(*parts)


def extract_archive(
    path: Path, destination: Path, limits: ArchiveLimits | None = None, quota: int | None = None
) -> Path:
    """Check every entry first, then extract regular files into `destination` (created),
    counting the bytes really written against `quota` (default: the limits' total); whatever
    fails leaves nothing behind, and no message names a path of this machine."""
    limits = limits or ArchiveLimits()
    if quota is not None and quota < limits.max_total_bytes:
        limits = limits.model_copy(update={"max_total_bytes": max(1, quota)})
    size = path.stat().st_size
    if size > limits.max_archive_bytes:
        raise ArchiveTooLargeError(
            f"the archive is {size} bytes; the limit is {limits.max_archive_bytes}"
        )
    kind = archive_kind(path)
    if kind is None:
        raise ArchiveError("not a zip or tar archive")
    destination.mkdir(parents=True, exist_ok=True)
    try:
        if kind == "zip":
            _extract_zip(path, destination, limits)
        else:
            _extract_tar(path, destination, limits)
    except ArchiveError:
        shutil.rmtree(destination, ignore_errors=True)
        raise
    except OSError as error:  # its text would name the destination
        shutil.rmtree(destination, ignore_errors=True)
        reason = error.strerror or type(error).__name__
        raise ArchiveError(f"cannot extract the {kind} archive: {reason}") from None
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, UnicodeDecodeError) as error:
        shutil.rmtree(destination, ignore_errors=True)
        raise ArchiveError(f"cannot read the {kind} archive: {_short(str(error))}") from None
    except BaseException:
        shutil.rmtree(destination, ignore_errors=True)
        raise
    return destination


def _check_totals(count: int, total: int, limits: ArchiveLimits) -> None:
    if count > limits.max_members:
        raise ArchiveTooLargeError(
            f"the archive has {count} entries; the limit is {limits.max_members}"
        )
    if total > limits.max_total_bytes:
        raise QuotaExceededError(
            f"the archive holds over {limits.max_total_bytes} bytes uncompressed, past the quota"
            f" of {limits.max_total_bytes}; extraction stopped"
        )


def _short(text: str, limit: int = 120) -> str:
    """Entry names and reasons shortened for messages (a name may be a megabyte long)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _check_member_size(name: str, size: int, limits: ArchiveLimits) -> None:
    if size > limits.max_member_bytes:
        raise ArchiveTooLargeError(
            f"archive entry {_short(name)!r} is {size} bytes;"
            f" the limit is {limits.max_member_bytes}"
        )


def _extract_zip(path: Path, destination: Path, limits: ArchiveLimits) -> None:
    with zipfile.ZipFile(path) as archive:
        entries = archive.infolist()
        _check_totals(len(entries), 0, limits)
        files: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
        seen: set[PurePosixPath] = set()
        total = 0
        for entry in entries:
            target = safe_member_path(entry.filename)
            mode = entry.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise ArchiveError(f"archive entry {_short(entry.filename)!r} is a link; refused")
            if entry.is_dir():
                continue
            if stat.S_IFMT(mode) not in (0, stat.S_IFREG):  # no type bits: a plain file
                raise ArchiveError(
                    f"archive entry {_short(entry.filename)!r} is not a regular file"
                )
            if not is_image_name(target):
                continue  # not read by the audit: not written
            _check_member_size(entry.filename, entry.file_size, limits)
            what = f"archive entry {_short(entry.filename)!r}"
            _check_ratio(what, entry.file_size, entry.compress_size, limits)
            total += entry.file_size
            files.append((entry, _unique(target, seen)))
        _check_totals(len(entries), total, limits)
        budget = _Budget(limits)
        for entry, target in files:
            with archive.open(entry) as source:
                _copy(source, destination / target, entry.filename, budget)


def _extract_tar(path: Path, destination: Path, limits: ArchiveLimits) -> None:
    compressed = path.stat().st_size
    with tarfile.open(path, "r:*") as archive:
        with open(path, "rb") as head:
            plain = not head.read(6).startswith(_COMPRESSED_TAR)
        files: list[tuple[tarfile.TarInfo, PurePosixPath]] = []
        seen: set[PurePosixPath] = set()
        total = count = 0
        for member in archive:  # streams headers: stop early on a flood of entries
            count += 1
            _check_totals(count, total, limits)
            if not plain:  # the stream as a whole: a tar member has no compressed size
                _check_ratio("the compressed archive", total, compressed, limits)
            target = safe_member_path(member.name)
            if member.issym() or member.islnk():
                raise ArchiveError(f"archive entry {_short(member.name)!r} is a link; refused")
            if member.isdir():
                continue
            if not member.isfile():
                raise ArchiveError(f"archive entry {_short(member.name)!r} is not a regular file")
            if not is_image_name(target):
                continue  # not read by the audit: not written
            _check_member_size(member.name, member.size, limits)
            total += member.size
            files.append((member, _unique(target, seen)))
        _check_totals(count, total, limits)
        if not plain:
            _check_ratio("the compressed archive", total, compressed, limits)
        budget = _Budget(limits)
        for member, target in files:
            source = archive.extractfile(member)
            if source is None:
                raise ArchiveError(f"archive entry {_short(member.name)!r} cannot be read")
            with source:
                _copy(source, destination / target, member.name, budget)


def _unique(target: PurePosixPath, seen: set[PurePosixPath]) -> PurePosixPath:
    """The target, unless an earlier entry writes it already (one would overwrite the other)."""
    if target in seen:
        raise ArchiveError(f"two archive entries are named {_short(str(target))!r}; refused")
    seen.add(target)
    return target


class _Budget:
    """Counts the bytes really written: headers may lie about sizes."""

    def __init__(self, limits: ArchiveLimits) -> None:
        self.limits = limits
        self.total = 0


def _check_ratio(what: str, size: int, compressed: int, limits: ArchiveLimits) -> None:
    """`what` inflates `size` bytes from `compressed`: refused past the ratio bound."""
    ratio = limits.max_compression_ratio
    if ratio is None or size <= RATIO_FLOOR_BYTES or size <= ratio * compressed:
        return
    raise CompressionRatioError(
        f"{what} inflates {size} bytes from {compressed} "
        f"({size / max(compressed, 1):.0f}:1), past the bound of {ratio:g}:1 for entries over "
        f"{RATIO_FLOOR_BYTES} bytes; refused before extraction"
    )


def _copy(source: IO[bytes], target: Path, name: str, budget: _Budget) -> None:
    head = source.read(_HEAD_BYTES)
    try:
        sniff_format(head)
    except ImageDecodeError:
        raise ArchiveError(
            f"archive entry {_short(name)!r} is not an image: its first bytes are no "
            f"{', '.join(ALLOWED_FORMATS)} signature; refused"
        ) from None
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with open(target, "wb") as sink:
        while chunk := (head or source.read(_CHUNK)):
            head = b""
            written += len(chunk)
            budget.total += len(chunk)
            _check_member_size(name, written, budget.limits)
            _check_totals(0, budget.total, budget.limits)
            sink.write(chunk)
