"""Benchmark rows: the figure, its value beside its target, printed and saved as JSON/markdown."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch


@dataclass
class Row:
    figure: str  # "1 baselines", "2 grad_cam", ...
    name: str  # what was measured
    device: str
    value: float | None  # None when skipped
    unit: str  # "x" (a ratio), "ms", "MiB", "%"
    target: str = ""  # e.g. "<= 1.3x"; empty for reference rows
    met: bool | None = None  # None when there is no target or no value
    note: str = ""
    detail: dict[str, Any] = field(default_factory=dict)  # raw timings and sizes


def at_most(value: float, limit: float) -> bool:
    return value <= limit


def at_least(value: float, limit: float) -> bool:
    return value >= limit


def _value(row: Row) -> str:
    if row.value is None:
        return "skipped"
    if row.unit == "x":
        return f"{row.value:.2f}x"
    if row.unit == "%":
        return f"{row.value:+.2f}%"
    return f"{row.value:.1f} {row.unit}"


def _verdict(row: Row) -> str:
    if row.met is None:
        return ""
    return "yes" if row.met else "MISSED"


def markdown_table(rows: list[Row]) -> str:
    lines = [
        "| figure | measurement | device | value | target | met | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        cells = [row.figure, row.name, row.device, _value(row), row.target, _verdict(row)]
        note = row.note.replace("|", "/")
        lines.append("| " + " | ".join(cells + [note]) + " |")
    return "\n".join(lines)


def print_row(row: Row) -> None:
    target = f"  target {row.target}" if row.target else ""
    verdict = f"  [{_verdict(row)}]" if row.met is not None else ""
    note = f"  ({row.note})" if row.note else ""
    print(f"[{row.device}] {row.figure} | {row.name}: {_value(row)}{target}{verdict}{note}")


def environment(threads: int, settings: dict[str, Any]) -> dict[str, Any]:
    import captum
    import pytorch_grad_cam  # noqa: F401

    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "captum": captum.__version__,
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": _cpu_count(),
        "torch_threads": threads,
        "cuda_device": cuda,
        # The machine's load when the run ended (1, 5, 15 minutes): other processes' work
        # inflates wall-clock times, and not always in proportion on both sides of a ratio.
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "settings": settings,
    }


def _cpu_count() -> int | None:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def save(rows: list[Row], env: dict[str, Any], directory: Path, stem: str) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    json_path, md_path = directory / f"{stem}.json", directory / f"{stem}.md"
    json_path.write_text(
        json.dumps({"environment": env, "rows": [asdict(r) for r in rows]}, indent=2) + "\n"
    )
    header = (
        f"# cnnlens benchmark ({stem})\n\n"
        f"torch {env['torch']}, captum {env['captum']}, {env['cpu_count']} CPU cores, "
        f"{env['torch_threads']} torch thread(s), GPU: {env['cuda_device'] or 'none'}, "
        f"load average {env.get('load_average')}.\n"
        f"Ratios are measured against baselines run in the same process; "
        f"settings: `{json.dumps(env['settings'])}`.\n\n"
    )
    md_path.write_text(header + markdown_table(rows) + "\n")
    return json_path, md_path
