"""The occlusion settings the benchmark times: captum's windows, captum's zero baseline."""

from __future__ import annotations

from typing import Any

ENGINES = ("dense", "incremental")  # "auto" picks one of these


def occlusion_params(
    window: int, stride: int, batch: int, engine: str | None = None
) -> dict[str, Any]:
    """Params of cnnlens's `occlusion` for a square window and stride, `batch` per forward."""
    params: dict[str, Any] = {
        "window": window,
        "stride": stride,
        "batch_size": batch,
        "fill": "zero",  # captum's baselines=0: zero in input space
    }
    if engine is not None:
        params["engine"] = engine
    return params
