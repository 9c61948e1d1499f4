"""`make bench`: every figure as a ratio to baselines run in this process, beside its target.

    python -m benchmarks.run                # the full run; saves results/latest.{json,md}
    python -m benchmarks.run --quick        # small sizes, a smoke run; saves results/quick.*
    python -m benchmarks.run --skip-slow    # without the 1000-call explain loop
    python -m benchmarks.run --cuda-only    # the CUDA figures alone (benchmarks/gpu.sh)

CPU always; CUDA too when torch sees a GPU (tensors stay on the device, timers synchronize).
"""

from __future__ import annotations

import argparse
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.figures import FIGURES, OCCLUSION_MODELS, Bench, Settings
from benchmarks.report import Row, environment, markdown_table, print_row, save
from cnnlens.heap import reuse_heap

RESULTS = Path(__file__).parent / "results"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    parser.add_argument("--skip-slow", action="store_true", help="skip the explain-call loop")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (CPU)")
    parser.add_argument(
        "--full-size-occlusion",
        action="store_true",
        help="resnet50 and vgg16 occlusion at full size on the CPU too (many minutes)",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--cpu-only", action="store_true", help="do not run the CUDA figures")
    which.add_argument(
        "--cuda-only", action="store_true", help="only the CUDA figures (benchmarks/gpu.sh)"
    )
    parser.add_argument(
        "--occlusion-models",
        nargs="+",
        choices=list(OCCLUSION_MODELS),
        default=list(OCCLUSION_MODELS),
    )
    parser.add_argument(
        "--figures",
        nargs="+",
        type=_figure_list,
        default=[list(_FIGURE_NAMES)],
        help=f"run only these figures, by name or comma-separated: {', '.join(_FIGURE_NAMES)}",
    )
    parser.add_argument(
        "--approx-size", type=int, default=None, help="image side of figure 7 (default 224)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to save JSON/markdown")
    args = parser.parse_args(argv)

    heap_reused = reuse_heap()
    torch.set_num_threads(args.threads)
    settings = Settings.for_run(args.quick, args.skip_slow, args.threads)
    settings.heap_reused = heap_reused
    settings.occlusion_models = args.occlusion_models
    if args.approx_size is not None:
        settings.approx_size = args.approx_size
    if args.full_size_occlusion:
        settings.occlusion_heavy_cpu_size = settings.occlusion_size
    devices = [] if args.cuda_only else [torch.device("cpu")]
    if torch.cuda.is_available() and not args.cpu_only:
        devices.append(torch.device("cuda"))
    elif args.cuda_only:
        parser.exit(3, "CUDA: no GPU present; --cuda-only has nothing to run\n")
    else:
        print("CUDA: no GPU present; the GPU figures are skipped")

    rows: list[Row] = []
    started = time.perf_counter()
    for device in devices:
        bench = Bench(settings, device)
        names = [name for group in args.figures for name in group]
        for figure in (_FIGURE_NAMES[name] for name in names):
            for row in _rows_of(figure, bench):
                print_row(row)
                rows.append(row)
    elapsed = time.perf_counter() - started
    env = environment(args.threads, {**vars(settings), "elapsed_s": round(elapsed, 1)})
    json_path, md_path = save(rows, env, args.out, "quick" if args.quick else "latest")
    print()
    print(markdown_table(rows))
    print(f"\nsaved {json_path} and {md_path} ({elapsed:.0f} s)")


_FIGURE_NAMES = {
    figure.__name__.removesuffix("_figure").replace("_scale", "-scale"): figure
    for figure in FIGURES
}


def _figure_list(value: str) -> list[str]:
    """'approx,latency' or 'approx' -> the figure names, each checked."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in _FIGURE_NAMES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown figure(s) {', '.join(unknown)}; choose from {', '.join(_FIGURE_NAMES)}"
        )
    return names


def _rows_of(figure: Callable[[Bench], list[Row]], bench: Bench) -> list[Row]:
    """The figure's rows, or one row saying why it failed (the other figures still run)."""
    try:
        return figure(bench)
    except Exception as error:
        traceback.print_exc()
        name = figure.__name__.removesuffix("_figure")
        note = f"failed: {type(error).__name__}: {error}".splitlines()[0][:300]
        return [Row(name, "figure failed", bench.label, None, "", note=note)]


if __name__ == "__main__":
    main()
