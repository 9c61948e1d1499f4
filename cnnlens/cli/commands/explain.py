"""Explain images: for each IMAGE, each --method and each --target (default: the top-1
prediction), write the overlay (in the image's own format unless --overlay-format) and the
heatmap PNG to --out, plus summary.json with the predictions, the targets and the files.
Runs locally, or on a service with --server URL.

examples:
  cnnlens explain cat.jpg
  cnnlens explain photos/*.jpg --method grad_cam saliency --target 285 "tabby, tabby cat"
  cnnlens explain cat.jpg --method occlusion --params '{"occlusion": {"window": 32}}'
  cnnlens explain cat.jpg --server http://127.0.0.1:8000 --out results/
  cnnlens explain street.jpg --model torchvision:fcn_resnet50 --target car --region 40,60,200,180
  cnnlens explain street.jpg --model torchvision:fasterrcnn_mobilenet_v3_large_320_fpn \
      --target car --box 40,60,200,180
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnlens.api.forms import DEFAULT_METHOD, OVERLAY_FORMATS, parse_box, parse_overlay_format
from cnnlens.cli.commands._common import (
    DEFAULT_MODEL,
    add_model_options,
    add_server_options,
    each_image,
    echo,
    existing_files,
    open_client,
    parse_params,
    parse_targets,
    split_list,
)

if TYPE_CHECKING:
    from cnnlens.api.models import ClassScore
    from cnnlens.client.results import ExplainResult

HELP = "explain images with one or more methods; write overlays, heatmaps and a summary"
SUMMARY = "summary.json"
_EXTENSIONS = {"jpeg": "jpg"}  # file extensions that differ from the overlay_format name


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    parser.add_argument(
        "--method",
        "-m",
        dest="methods",
        nargs="+",
        action="extend",
        metavar="M",
        help=f"method names, repeated or comma-separated (default: {DEFAULT_METHOD})",
    )
    parser.add_argument(
        "--target",
        "-t",
        dest="targets",
        nargs="+",
        action="extend",
        metavar="T",
        help="class indices or labels, one map each (default: the top-1 prediction)",
    )
    add_model_options(parser)
    parser.add_argument(
        "--region",
        metavar="X0,Y0,X1,Y1",
        help="segmentation models: the box (image pixels) whose target logits are explained "
        "(default: the pixels predicted as the target)",
    )
    parser.add_argument(
        "--box",
        metavar="X0,Y0,X1,Y1",
        help="detectors: the detection to explain, its box in image pixels (the one with the "
        "--target label, or any, that overlaps it most); default: every detection above "
        "the model's score threshold",
    )
    parser.add_argument(
        "--score-threshold",
        type=float,
        metavar="S",
        help="detectors, locally: the score a detection needs to be explained (default 0.5)",
    )
    parser.add_argument(
        "--out", "-o", type=Path, default=Path("explanations"), help="output folder"
    )
    parser.add_argument("--array", action="store_true", help="also save raw maps as .npy")
    parser.add_argument(
        "--overlay-format",
        choices=OVERLAY_FORMATS,
        default=None,
        help="format of the overlay files (default: like the image: jpeg for a JPEG, webp for "
        "a lossy WebP, else png); heatmaps are PNG",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar or lines")
    add_server_options(parser)


@dataclass
class ImageReport:
    """What one image produced, as written to summary.json."""

    image: str
    width: int = 0
    height: int = 0
    predictions: list[dict[str, Any]] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)
    explanations: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Rendered:
    """One map as the engines hand it to the writer."""

    method: str
    target: dict[str, Any] | None
    layer: str | None
    overlay_png: bytes | None
    heatmap_png: bytes | None
    array: Any  # numpy array or None
    elapsed_ms: float


@dataclass
class ImageResult:
    width: int
    height: int
    predictions: list[dict[str, Any]]
    rendered: list[Rendered]
    overlay_format: str = "png"


@dataclass(frozen=True)
class RequestSettings:
    """What the CLI asks of either engine, read once from the arguments."""

    methods: Sequence[str]
    targets: list[int | str]
    params: dict[str, dict[str, Any]]
    layer: str | None
    region: tuple[float, ...] | None
    box: tuple[float, ...] | None
    output: list[str]
    overlay_format: str | None

    @classmethod
    def of(
        cls, args: argparse.Namespace, methods: Sequence[str], targets: list[int | str],
        params: dict[str, dict[str, Any]],
    ) -> RequestSettings:  # fmt: skip
        return cls(
            methods, targets, params, args.layer, parse_box(args.region),
            parse_box(args.box, "box"), ["overlay", "heatmap", *(["array"] if args.array else [])],
            args.overlay_format,
        )  # fmt: skip


class LocalEngine:
    """Explains in this process with cnnlens.explain; the model loads once."""

    def __init__(
        self, args: argparse.Namespace, methods: Sequence[str], targets: list[int | str],
        params: dict[str, dict[str, Any]],
    ) -> None:  # fmt: skip
        from cnnlens.methods.base import get_method
        from cnnlens.models import load_model

        for name in [*methods, *params]:
            get_method(name)  # unknown names fail before the model loads
        self.model = load_model(
            args.model or DEFAULT_MODEL, weights=args.weights, score_threshold=args.score_threshold
        )
        self.model_name: str | None = self.model.name
        self.request = RequestSettings.of(args, methods, targets, params)

    def __call__(self, path: Path) -> ImageResult:
        """The Explanations, rendered to the files the service would send."""
        import numpy as np

        from cnnlens.api.bodies import class_score, image_files
        from cnnlens.explain import explain
        from cnnlens.imageio import lossy_format

        asked = self.request
        result = explain(
            self.model, path, asked.methods, target=asked.targets or None, layer=asked.layer,
            params=asked.params, region=asked.region, box=asked.box,
        )  # fmt: skip
        image_format = parse_overlay_format(asked.overlay_format, lossy_format(result.image))
        rendered = []
        for item in result:
            overlay, heatmap = image_files(item, asked.output, image_format)
            array = item.map.astype(np.float32) if "array" in asked.output else None
            target = _score(class_score(item.target))
            rendered.append(
                Rendered(item.method, target, item.layer, overlay, heatmap, array, item.elapsed_ms)
            )
        predictions = [score.model_dump() for p in result.predictions if (score := class_score(p))]
        width, height = result.image.width, result.image.height
        return ImageResult(width, height, predictions, rendered, image_format)


class RemoteEngine:
    """Explains on a cnnlens service through Client."""

    def __init__(
        self, args: argparse.Namespace, methods: Sequence[str], targets: list[int | str],
        params: dict[str, dict[str, Any]],
    ) -> None:  # fmt: skip
        self.client = open_client(args)
        self.model_name: str | None = args.model
        self.request = RequestSettings.of(args, methods, targets, params)

    def __call__(self, path: Path) -> ImageResult:
        asked = self.request
        result = self.client.explain(
            path, asked.methods, model=self.model_name, target=asked.targets or None,
            layer=asked.layer, params=asked.params, output=asked.output, region=asked.region,
            overlay_format=asked.overlay_format, box=asked.box,
        )  # fmt: skip
        self.model_name = result.model or self.model_name
        return image_result(result)


def image_result(result: ExplainResult) -> ImageResult:
    """A v1 explain answer (as the client reads it) as the files and rows this command writes."""
    rendered = [
        Rendered(
            method=item.method,
            target=_score(item.target),
            layer=item.layer,
            overlay_png=item.overlay_bytes,
            heatmap_png=item.heatmap_bytes,
            array=item.map,
            elapsed_ms=item.elapsed_ms,
        )
        for item in result.explanations
    ]
    predictions = [p.model_dump() for p in result.predictions]
    return ImageResult(result.width, result.height, predictions, rendered, result.overlay_format)


def _score(score: ClassScore | None) -> dict[str, Any] | None:
    return None if score is None else score.model_dump()


def run(args: argparse.Namespace) -> int:
    images = existing_files(args.images)
    methods = split_list(args.methods) or [DEFAULT_METHOD]
    targets = parse_targets(split_list(args.targets))
    params = parse_params(args.params)
    engine_class = RemoteEngine if args.server else LocalEngine
    engine = engine_class(args, methods, targets, params)
    args.out.mkdir(parents=True, exist_ok=True)
    stems = _unique_stems(images)
    reports: list[ImageReport] = []
    failed: list[dict[str, str]] = []
    for path, result in each_image(images, engine, failed, "explaining", args.quiet):
        report = _write(
            args.out, stems[path], path, result.rendered, args.array, result.overlay_format
        )
        report.width, report.height = result.width, result.height
        report.predictions = result.predictions
        reports.append(report)
        if not args.quiet:
            top = result.predictions[0] if result.predictions else None
            label = f"{top['label']} ({top['probability']:.3f})" if top else "?"
            echo(f"{path}: {label} -> {len(report.explanations)} map(s)")
    summary = {
        "model": engine.model_name,
        "server": args.server,
        "methods": methods,
        "images": [vars(report) for report in reports],
        "failed": failed,
    }
    summary_path = args.out / SUMMARY
    summary_path.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    if not args.quiet:
        print(f"wrote {summary_path}")
    return 1 if failed else 0


def _unique_stems(images: Sequence[Path]) -> dict[Path, str]:
    """File stems for the outputs; images with the same name get -2, -3, ..."""
    used: set[str] = set()
    return {path: _unused(path.stem, used) for path in images}


def _unused(name: str, used: set[str]) -> str:
    """`name`, or `name-2`, `name-3`, ... when taken; recorded as used."""
    found, count = name, 1
    while found in used:
        count += 1
        found = f"{name}-{count}"
    used.add(found)
    return found


def _write(
    out: Path,
    stem: str,
    path: Path,
    rendered: Sequence[Rendered],
    save_array: bool,
    overlay_format: str = "png",
) -> ImageReport:
    report = ImageReport(image=str(path))
    seen_targets: dict[tuple[Any, ...], dict[str, Any]] = {}
    used: set[str] = set()
    for item in rendered:
        name = f"{stem}_{item.method}" + (f"_{item.target['index']}" if item.target else "")
        name = _unused(name, used)  # a detector's several detections of one label
        files: dict[str, str | None] = {"overlay": None, "heatmap": None, "array": None}
        overlay_extension = _EXTENSIONS.get(overlay_format, overlay_format)
        for kind, data, extension in (
            ("overlay", item.overlay_png, overlay_extension),
            ("heatmap", item.heatmap_png, "png"),
        ):
            if data is not None:
                file_name = f"{name}_{kind}.{extension}"
                (out / file_name).write_bytes(data)
                files[kind] = file_name
        if save_array and item.array is not None:
            import numpy as np

            np.save(out / f"{name}.npy", item.array)
            files["array"] = f"{name}.npy"
        if item.target:
            box = item.target.get("box")
            key = (int(item.target["index"]), *(box or ()))
            seen_targets.setdefault(key, item.target)
        report.explanations.append(
            {
                "method": item.method,
                "target": item.target,
                "layer": item.layer,
                "elapsed_ms": round(item.elapsed_ms, 2),
                **files,
            }
        )
    report.targets = list(seen_targets.values())
    return report
