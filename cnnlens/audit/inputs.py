"""What an audit looks at: the images of a folder, an archive or a CSV list, with optional
labels (class index or name), object boxes and masks."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from cnnlens.audit.archive import ArchiveLimits, archive_kind, extract_archive, is_image_name
from cnnlens.audit.localization import Box
from cnnlens.audit.records import AuditItem
from cnnlens.errors import CnnlensError, TargetError, shown
from cnnlens.targets import class_index

T = TypeVar("T")
_HEADER_WORDS = frozenset({"filename", "file", "path", "image", "name"})


class AuditInputError(CnnlensError):
    """An audit source, labels, boxes or masks file that cannot be used."""

    code = "bad_audit_input"
    status = 400


class LabelsError(AuditInputError):
    """A labels CSV row that names no class: a class index is ASCII digits, a name one of the
    model's labels (compared after NFKC and case folding)."""

    code = "bad_labels"
    status = 422


@dataclass
class Annotations:
    """Optional ground truth, keyed by image name (relative path or bare file name)."""

    labels: dict[str, str] = field(default_factory=dict)  # raw text: index or class name
    boxes: dict[str, list[Box]] = field(default_factory=dict)
    masks: dict[str, str] = field(default_factory=dict)  # name -> mask file

    @classmethod
    def read(
        cls, labels: Path | str | None, boxes: Path | str | None, masks: Path | str | None
    ) -> Annotations:
        """From a labels CSV, a boxes CSV and a folder of masks, each optional: a detector's
        labelled boxes come from the labels CSV (`read_labels`)."""
        labelled = read_labelled_boxes(Path(labels)) if labels else {}
        return cls(
            labels=read_labels(Path(labels)) if labels else {},
            boxes={**(read_boxes(Path(boxes)) if boxes else {}), **labelled},
            masks=read_masks(Path(masks)) if masks else {},
        )


def collect_images(source: Path, workdir: Path, limits: ArchiveLimits | None = None) -> tuple[
    list[tuple[str, Path]], dict[str, str]
]:  # fmt: skip
    """(name, path) pairs in name order, and labels a CSV listing may carry in its 2nd column.

    A folder is scanned recursively for image suffixes; a zip or tar archive is extracted
    safely into `workdir/input` first; a CSV lists files relative to its own folder.
    """
    if source.is_dir():
        return scan_images(source), {}
    if not source.is_file():
        raise AuditInputError(f"no such file or folder: {source}")
    if source.suffix.lower() == ".csv":
        return _listed(source)
    if archive_kind(source) is not None:
        root = extract_archive(source, workdir / "input", limits)
        return scan_images(root), {}
    raise AuditInputError(f"{source} is not a folder, a zip or tar archive, or a CSV list")


def scan_images(root: Path) -> list[tuple[str, Path]]:
    """(relative posix name, path) of the image files under root, hidden ones skipped."""
    found = []
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if not is_image_name(relative) or path.is_symlink():
            continue
        if path.is_file():
            found.append((relative.as_posix(), path))
    return sorted(found)


def _rows(path: Path) -> list[list[str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = [[cell.strip() for cell in row] for row in csv.reader(handle)]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise AuditInputError(f"cannot read the CSV file {path.name}: {error}") from None
    rows = [row for row in rows if row and any(row) and not row[0].startswith("#")]
    if rows and rows[0][0].lower() in _HEADER_WORDS:
        rows = rows[1:]
    return rows


def _listed(listing: Path) -> tuple[list[tuple[str, Path]], dict[str, str]]:
    images: list[tuple[str, Path]] = []
    labels: dict[str, str] = {}
    for row in _rows(listing):
        path = Path(row[0])
        path = path if path.is_absolute() else listing.parent / path
        images.append((row[0], path))  # a missing file becomes an error row, not a refusal
        if len(row) > 1 and row[1]:
            labels[row[0]] = row[1]
    return images, labels


def read_labels(path: Path) -> dict[str, str]:
    """CSV `filename,label` (label: class index or class name; an optional header row).

    A detector's labels are labelled boxes, `filename,label,x0,y0,x1,y1` (image pixels), one
    row per object: an image's labels are joined by ";" in row order, and
    `read_labelled_boxes` gives their boxes in the same order."""
    labels: dict[str, str] = {}
    for row in _rows(path):
        if len(row) < 2 or not row[1]:
            raise LabelsError(f"{path.name}: the row {shown(','.join(row))} needs filename,label")
        if _is_labelled_box(row) and row[0] in labels:
            labels[row[0]] += ";" + row[1]
        else:
            labels[row[0]] = row[1]
    return labels


def read_labelled_boxes(path: Path) -> dict[str, list[Box]]:
    """The boxes of a labels CSV's `filename,label,x0,y0,x1,y1` rows (none for plain labels)."""
    boxes: dict[str, list[Box]] = {}
    for row in _rows(path):
        if _is_labelled_box(row):
            boxes.setdefault(row[0], []).append(_box(path, row, 2))
    return boxes


def _is_labelled_box(row: Sequence[str]) -> bool:
    return len(row) >= 6 and any(row[2:6])


def read_boxes(path: Path) -> dict[str, list[Box]]:
    """CSV `filename,x0,y0,x1,y1` in image pixels; several rows per image for several boxes."""
    boxes: dict[str, list[Box]] = {}
    for row in _rows(path):
        boxes.setdefault(row[0], []).append(_box(path, row, 1))
    return boxes


def _box(path: Path, row: Sequence[str], start: int) -> Box:
    """The box in row[start:start + 4], checked."""
    columns = "filename,label,x0,y0,x1,y1" if start == 2 else "filename,x0,y0,x1,y1"
    try:
        x0, y0, x1, y1 = (float(value) for value in row[start : start + 4])
    except ValueError:
        raise AuditInputError(
            f"{path.name}: each row needs {columns} numbers; got {shown(row)}"
        ) from None
    if len(row) < start + 4 or x1 <= x0 or y1 <= y0:
        raise AuditInputError(f"{path.name}: a box needs x0 < x1 and y0 < y1; got {shown(row)}")
    return x0, y0, x1, y1


def read_masks(folder: Path) -> dict[str, str]:
    """Mask images (non-zero = object) named like the images: `cat.png` for `cat.jpg`."""
    if not folder.is_dir():
        raise AuditInputError(f"no such masks folder: {folder}")
    return {name: str(path) for name, path in scan_images(folder)}


def build_items(
    images: Sequence[tuple[str, Path | str]],
    annotations: Annotations,
    categories: Sequence[str],
    num_classes: int,
) -> list[AuditItem]:
    """Attach labels, boxes and masks to the images; unknown class names fail at once."""
    masks_by_stem = {
        Path(name).with_suffix("").as_posix(): path for name, path in annotations.masks.items()
    }
    masks_by_stem |= {Path(name).stem: path for name, path in annotations.masks.items()}
    items, bad = [], []
    for index, (name, path) in enumerate(images):
        label: int | None = None
        label_set: tuple[int, ...] = ()
        raw = _lookup(annotations.labels, name)
        if raw is not None:
            try:  # several labels per image (multi-label models) are separated by ";"
                label_set = tuple(
                    class_index(part, categories, num_classes)
                    for part in raw.split(";")
                    if part.strip()
                )
                label = label_set[0] if label_set else None
            except TargetError as error:
                bad.append(f"the row {shown(f'{name},{raw}')}: {error.message}")
        stem = Path(name).with_suffix("").as_posix()
        mask = masks_by_stem.get(stem) or masks_by_stem.get(Path(name).stem)
        boxes = _lookup(annotations.boxes, name) or []
        shown_name = printable_name(name)
        items.append(AuditItem(index, shown_name, str(path), label, list(boxes), mask, label_set))
    if bad:
        listed = "; ".join(bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise LabelsError(f"labels that name no class of the model: {listed}")
    return items


def unmatched_labels(
    images: Sequence[tuple[str, Path | str]], labels: Mapping[str, str]
) -> list[str]:
    """The labels rows (file names) that name none of the images, in the CSV's order: a typo
    or a missing file, reported in the summary rather than silently ignored."""
    names = {name for name, _ in images}
    bare = {Path(name).name for name in names}
    return [key for key in labels if key not in names and key not in bare]


def _lookup(table: Mapping[str, T], name: str) -> T | None:
    """By relative path first, then by bare file name."""
    if name in table:
        return table[name]
    return table.get(Path(name).name)


def printable_name(name: str) -> str:
    """A file name that is not UTF-8 on disk (its bytes decoded as surrogates), made printable.

    The undecodable bytes are written as ``\\xff``: the report, the exports and the store hold
    text, and two such names stay distinct.
    """
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
