"""Compare attribution methods on the same images: a side-by-side grid (grid.png), the maps'
pairwise agreement (Spearman rank correlation, top-k% IoU) and scores for each map:
deletion / insertion AUC (Petsiuk et al. 2018; --baseline rise is the RISE authors'
protocol, --steps 224 their schedule at 224 px), similarity under cascading model
randomization (Adebayo et al. 2018), infidelity and sensitivity_max (Yeh et al. 2019),
road (Rong et al. 2022), sparseness (Chalasani et al. 2020) and complexity (Bhatt et al.
2020), with the protocol followed, all in compare.json. A folder stands for its images.
With --benchmark: mean ± std of each score per method over all images, as benchmark.md,
benchmark.csv and a bar plot (benchmark.svg or .png). Runs locally, or with --server URL.

examples:
  cnnlens compare cat.jpg --method grad_cam guided_backprop saliency
  cnnlens compare cat.jpg dog.jpg --shared-scale --steps 32 --baseline blur --ssim
  cnnlens compare cat.jpg --scores deletion insertion --steps 224   # RISE's own schedule
  cnnlens compare cat.jpg --scores sensitivity_max sparseness complexity --seed 3
  cnnlens compare photos/ --benchmark --random-baseline --plot-format png --out bench/
  cnnlens compare street.jpg --model scenes --target car --region 40,60,200,180
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnlens.api.forms import COMPARE_METHODS, parse_box
from cnnlens.cli.commands._common import (
    DEFAULT_MODEL,
    UsageError,
    add_model_options,
    add_server_options,
    each_image,
    echo,
    open_client,
    parse_params,
    parse_targets,
    split_list,
)
from cnnlens.compare.options import ALIASES, BASELINES, DEFAULT_SCORES, SCORES

if TYPE_CHECKING:
    from cnnlens.client.results import CompareResult

HELP = "compare methods side by side: grid, agreement, faithfulness scores, sanity check"
DEFAULT_METHODS = COMPARE_METHODS
GRID, REPORT = "grid.png", "compare.json"
MAX_GRID_ROWS = 16  # a benchmark over many images writes its tables and plot, not a grid


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders")
    parser.add_argument(
        "--method", "-m", dest="methods", nargs="+", action="extend", metavar="M",
        help=f"methods, repeated or comma-separated (default: {' '.join(DEFAULT_METHODS)})",
    )  # fmt: skip
    parser.add_argument(
        "--target", "-t", help="one class index or label for every image (default: top-1)"
    )
    add_model_options(parser)
    parser.add_argument(
        "--region", metavar="X0,Y0,X1,Y1",
        help="segmentation models: the box (image pixels) the target's score is taken over "
        "(default: the pixels predicted as the target)",
    )  # fmt: skip
    scores = parser.add_argument_group("scores")
    scores.add_argument(
        "--scores", nargs="+", action="extend", metavar="S",
        help=f"any of {', '.join(SCORES)} (default: {' '.join(DEFAULT_SCORES)}; 'none' for "
        "agreement only)",
    )  # fmt: skip
    scores.add_argument(
        "--steps", type=int, help="steps per perturbation curve (default 16; 224: RISE's schedule)"
    )
    scores.add_argument(
        "--baseline", choices=BASELINES,
        help="rise (default): the RISE authors' protocol, deletion to zeros and insertion from "
        "an 11x11 sigma=5 blur; mean: zeros both ways; blur: a blur of --blur-sigma both ways",
    )  # fmt: skip
    scores.add_argument("--blur-sigma", type=float, help="the blur baseline's sigma (default 5)")
    scores.add_argument(
        "--n-perturb-samples", type=int, help="infidelity, sensitivity_max: samples (default 10)"
    )
    scores.add_argument(
        "--perturb-radius", type=float, help="sensitivity_max: uniform radius (default 0.02)"
    )
    scores.add_argument(
        "--infidelity-noise", type=float, help="infidelity: Gaussian std (default 0.003)"
    )
    scores.add_argument(
        "--road-percentiles", nargs="+", action="extend", metavar="P",
        help="road: percentiles (default 10 20 ... 90)",
    )  # fmt: skip
    scores.add_argument("--top-k", type=float, help="share of pixels for IoU (default 0.1)")
    scores.add_argument("--stages", type=int, help="blocks randomized, top down (default 3)")
    scores.add_argument("--seed", type=int, help="seed of randomization and ties (default 0)")
    scores.add_argument("--ssim", action="store_true", help="also SSIM under randomization")
    scores.add_argument(
        "--random-baseline", action="store_true", help="also score a seeded random map"
    )
    parser.add_argument("--shared-scale", action="store_true", help="one colour scale in the grid")
    parser.add_argument(
        "--benchmark", action="store_true", help="write mean ± std tables and a plot"
    )
    parser.add_argument("--plot-format", choices=("svg", "png"), default="svg")
    parser.add_argument("--out", "-o", type=Path, default=Path("comparison"), help="output folder")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar or lines")
    add_server_options(parser)


def run(args: argparse.Namespace) -> int:
    from cnnlens.compare.benchmark import image_files

    images = image_files(args.images)
    missing = [str(p) for p in images if not p.is_file()]
    if missing:
        raise UsageError(f"no such image file: {', '.join(missing)}")
    if not images:
        raise UsageError("no images found (folders are searched for image files)")
    methods = split_list(args.methods) or list(DEFAULT_METHODS)
    targets = parse_targets([args.target] if args.target else [])
    target = targets[0] if targets else None
    params = parse_params(args.params)
    options = _options(args)
    args.region = parse_box(args.region)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.server:
        report, grid = _remote(args, images, methods, target, params, options)
    else:
        report, grid = _local(args, images, methods, target, params, options)
    written = [args.out / REPORT]
    (args.out / REPORT).write_text(json.dumps(report, indent=2), encoding="utf-8")
    if grid is not None:
        (args.out / GRID).write_bytes(grid)
        written.append(args.out / GRID)
    if args.benchmark:
        written += _write_benchmark(args.out, report, args.plot_format)
    if not args.quiet:
        _print_report(report, args.benchmark)
        echo("wrote " + ", ".join(str(path) for path in written))
    return 1 if report.get("failed") else 0


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """Only what was given: the library's (or the server's) defaults stand for the rest."""
    chosen: dict[str, Any] = {}
    if args.scores:
        names = split_list(args.scores)
        chosen["scores"] = [] if names == ["none"] else names
    for key in (
        "steps", "baseline", "blur_sigma", "top_k", "stages", "seed", "n_perturb_samples",
        "perturb_radius", "infidelity_noise",
    ):  # fmt: skip
        if getattr(args, key) is not None:
            chosen[key] = getattr(args, key)
    if args.road_percentiles:
        chosen["road_percentiles"] = split_list(args.road_percentiles)
    for key in ("ssim", "random_baseline", "shared_scale"):
        if getattr(args, key):
            chosen[key] = True
    return chosen


def _local(
    args: argparse.Namespace, images: list[Path], methods: list[str], target: int | str | None,
    params: dict[str, Any], options: dict[str, Any],
) -> tuple[dict[str, Any], bytes | None]:  # fmt: skip
    from cnnlens.compare import compare, parse_options
    from cnnlens.compare.engine import check_methods
    from cnnlens.methods.base import get_method
    from cnnlens.models import load_model
    from cnnlens.render import to_png

    check_methods(methods)  # unknown names and bad options fail before the model loads
    for name in params:
        get_method(name)
    parsed = parse_options(options)
    model = load_model(args.model or DEFAULT_MODEL, weights=args.weights)
    failed: list[dict[str, str]] = []

    def skip(name: str, error: Exception) -> None:
        failed.append({"image": name, "error": str(error)})
        echo(f"{name}: failed: {error}", error=True)

    comparison = compare(
        model, [str(p) for p in images], methods, target=target, layer=args.layer,
        params=params, options=parsed, names=[str(p) for p in images], region=args.region,
        on_error=skip, progress=False if args.quiet else None,
    )  # fmt: skip
    rows = len(comparison.images)
    grid = to_png(comparison.grid()) if 0 < rows <= MAX_GRID_ROWS else None
    return {**comparison.to_json(), "server": None, "failed": failed}, grid


def _remote(
    args: argparse.Namespace, images: list[Path], methods: list[str], target: int | str | None,
    params: dict[str, Any], options: dict[str, Any],
) -> tuple[dict[str, Any], bytes | None]:  # fmt: skip
    """One POST /v1/compare per image (Client.compare); answers merged, grids stacked."""
    from cnnlens.compare.benchmark import merge_reports
    from cnnlens.render import to_png

    client = open_client(args)
    rest = {k: v for k, v in options.items() if k not in ("scores", "steps")}
    answers: list[dict[str, Any]] = []
    grids = []
    failed: list[dict[str, str]] = []

    def compare(path: Path) -> CompareResult:
        return client.compare(
            path, methods, model=args.model, target=target, layer=args.layer,
            params=params or None, scores=options.get("scores"), steps=options.get("steps"),
            options=rest, region=args.region,
        )  # fmt: skip

    for path, result in each_image(images, compare, failed, "comparing", args.quiet):
        answer = result.model_dump(mode="json", exclude={"grid_png"})
        for item in answer.get("images", []):
            item["name"] = str(path)
        answers.append(answer)
        if result.grid is not None:
            grids.append(result.grid)
    if not answers:
        report: dict[str, Any] = {"methods": methods, "images": [], "summary": {}}
    else:
        report = merge_reports(answers)
    report.update(server=args.server, failed=failed)
    grid = to_png(_stack(grids)) if grids and len(images) <= MAX_GRID_ROWS else None
    return report, grid


def _stack(rows: list[Any]) -> Any:
    """Per-image grid rows from the server (PIL images), one under the other."""
    from PIL import Image

    sheet = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows)), "white")
    top = 0
    for row in rows:
        sheet.paste(row.convert("RGB"), (0, top))
        top += row.height
    return sheet


def _write_benchmark(out: Path, report: dict[str, Any], plot_format: str) -> list[Path]:
    from cnnlens.compare.benchmark import plot, to_csv, to_markdown

    paths = [out / "benchmark.md", out / "benchmark.csv"]
    paths[0].write_text(to_markdown(report), encoding="utf-8")
    paths[1].write_text(to_csv(report), encoding="utf-8")
    if report.get("summary") and any(report["summary"].values()):
        figure = out / f"benchmark.{plot_format}"
        figure.write_bytes(plot(report, plot_format))
        paths.append(figure)
    return paths


def _print_report(report: dict[str, Any], benchmark: bool) -> None:
    from cnnlens.compare.benchmark import to_markdown
    from cnnlens.compare.protocol import protocol_text

    if benchmark:
        echo(to_markdown(report).rstrip())
        return
    if report.get("protocol"):
        echo(f"protocol: {protocol_text(report['protocol'])}")
    for image in report.get("images", []):
        target = image["target"]
        echo(f"{image['name']}: {target['label']} ({target['probability']:.3f})")
        for pair in image["agreement"]:
            echo(
                f"  {' vs '.join(pair['methods'])}: spearman {_fmt(pair['spearman'])}, "
                f"top-k IoU {_fmt(pair['top_k_iou'])}"
            )
        for method, scores in image["scores"].items():
            text = ", ".join(
                f"{name} {_fmt(value)}" for name, value in scores.items() if name not in ALIASES
            )
            echo(f"  {method}: {text or 'no scores'}")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
