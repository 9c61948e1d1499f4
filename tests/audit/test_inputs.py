"""Audit inputs: CSV lists, tar archives, labels by index or name, boxes, masks, bad rows."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

from cnnlens.audit.inputs import (
    Annotations,
    AuditInputError,
    build_items,
    collect_images,
    read_boxes,
    read_labels,
    read_masks,
)

CATEGORIES = ["tench", "goldfish", "tabby, tabby cat"]


def _touch(path: Path) -> Path:
    """A file with a PNG signature (what extraction checks), not a decodable image."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n")
    return path


def test_folder_scan_skips_hidden_and_non_images(tmp_path: Path) -> None:
    for name in ("b.jpg", "a/c.PNG", ".hidden/d.png", "__MACOSX/e.png", "notes.txt", ".f.png"):
        _touch(tmp_path / "in" / name)
    images, labels = collect_images(tmp_path / "in", tmp_path / "work")
    assert [name for name, _ in images] == ["a/c.PNG", "b.jpg"] and labels == {}


def test_csv_list_with_labels_and_tar_archive(tmp_path: Path) -> None:
    _touch(tmp_path / "pics" / "one.png")
    listing = tmp_path / "list.csv"
    listing.write_text('path,label\npics/one.png,1\npics/missing.png,"tabby, tabby cat"\n')
    images, labels = collect_images(listing, tmp_path / "work")
    assert images == [("pics/one.png", tmp_path / "pics/one.png"),
                      ("pics/missing.png", tmp_path / "pics/missing.png")]  # fmt: skip
    assert labels == {"pics/one.png": "1", "pics/missing.png": "tabby, tabby cat"}

    archive = tmp_path / "pics.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(tmp_path / "pics" / "one.png", arcname="inner/one.png")
    images, _ = collect_images(archive, tmp_path / "work")
    assert [name for name, _ in images] == ["inner/one.png"]
    assert images[0][1] == tmp_path / "work" / "input" / "inner" / "one.png"


def test_labels_boxes_and_masks_attach(tmp_path: Path) -> None:
    labels_csv = tmp_path / "labels.csv"
    labels_csv.write_text('filename,label\na/x.png,2\ny.png,"Tabby, tabby cat"\nz.png,goldfish\n')
    boxes_csv = tmp_path / "boxes.csv"
    boxes_csv.write_text("x.png,1,2,3,4\nx.png,5,6,7,8\n")
    _touch(tmp_path / "masks" / "a" / "x.png")
    annotations = Annotations(
        labels=read_labels(labels_csv), boxes=read_boxes(boxes_csv),
        masks=read_masks(tmp_path / "masks"),
    )  # fmt: skip
    images = [("a/x.png", tmp_path / "a/x.png"), ("b/y.png", tmp_path / "b/y.png")]
    x, y = build_items(images, annotations, CATEGORIES, 3)
    assert (x.label, y.label) == (2, 2)  # by index; by name, case-insensitive, via bare name
    assert x.boxes == [(1, 2, 3, 4), (5, 6, 7, 8)] and y.boxes == []
    assert x.mask_path == str(tmp_path / "masks" / "a" / "x.png") and y.mask_path is None


def test_bad_rows_are_clear_errors(tmp_path: Path) -> None:
    bad_label = tmp_path / "labels.csv"
    bad_label.write_text("x.png,zebra\ny.png,7\n")
    with pytest.raises(AuditInputError) as error:
        build_items([("x.png", tmp_path), ("y.png", tmp_path)],
                    Annotations(labels=read_labels(bad_label)), CATEGORIES, 3)  # fmt: skip
    assert error.value.code == "bad_labels" and "zebra" in error.value.message
    assert "out of range" in error.value.message
    bad_box = tmp_path / "boxes.csv"
    bad_box.write_text("x.png,5,5,1,1\n")
    with pytest.raises(AuditInputError, match="x0 < x1"):
        read_boxes(bad_box)
    bad_box.write_text("x.png,a,b,c,d\n")
    with pytest.raises(AuditInputError, match="numbers"):
        read_boxes(bad_box)
    no_label = tmp_path / "nolabel.csv"
    no_label.write_text("x.png\n")
    with pytest.raises(AuditInputError, match="filename,label"):
        read_labels(no_label)
    with pytest.raises(AuditInputError, match="not a folder"):
        collect_images(_touch(tmp_path / "file.bin"), tmp_path / "work")


def test_a_file_name_that_is_not_utf8_gets_a_printable_name(tmp_path: Path) -> None:
    folder = Path(os.fsdecode(os.fsencode(str(tmp_path / "in")) + b"/"))
    _touch(Path(os.fsdecode(os.fsencode(str(folder)) + b"/\xff\xfe.jpg")))
    images, _ = collect_images(folder, tmp_path / "work")
    (item,) = build_items(images, Annotations(), CATEGORIES, len(CATEGORIES))
    assert item.name == "\\xff\\xfe.jpg"
    assert Path(item.path).read_bytes().startswith(b"\x89PNG")  # the path still opens the file
