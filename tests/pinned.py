"""The budget every app built by the tests runs with, fixed rather than measured.

A calibration times forwards on this machine, so a budget derived from it would let a
request through on an idle machine and refuse it on a loaded one. Test apps pin both the
calibration (the speed and memory the estimates use) and the `[limits]` budgets: a request
is in or over budget the same way on every run.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from cnnlens.methods.cost import Calibration
from cnnlens.models import LoadedModel
from cnnlens.service import Settings, create_app

# About efficientnet_lite0 on 2 CPU cores (input shape, forward and backward seconds per
# row, bytes kept for a backward and live in a plain forward, per row).
PINNED_CALIBRATION = Calibration((3, 224, 224), 0.025, 0.035, 89_000_000, 15_000_000)
# Room for every request the other tests send (8-image comparisons, 16 targets of SmoothGrad),
# not for the hostile ones of tests/reliability/test_budget_requests.py.
PINNED_LIMITS: dict[str, Any] = {
    "budget_forward_passes": 1500,
    "budget_memory_bytes": 2 * 1024**3,
}
# The same budget for a server started as a process (its calibration still runs, but the
# work and memory budgets do not follow it).
PINNED_ENVIRONMENT = {
    "CNNLENS_BUDGET_FORWARD_PASSES": str(PINNED_LIMITS["budget_forward_passes"]),
    "CNNLENS_BUDGET_MEMORY_BYTES": str(PINNED_LIMITS["budget_memory_bytes"]),
}


def pinned_settings(data: dict[str, Any] | None = None, **limits: Any) -> Settings:
    """Settings from `data`, with the pinned budgets under its limits (then `limits`)."""
    data = dict(data or {})
    data["limits"] = {**PINNED_LIMITS, **(data.get("limits") or {}), **limits}
    return Settings.model_validate(data)


def pinned_app(settings: Settings, *models: LoadedModel, **named: LoadedModel) -> FastAPI:
    """`create_app` serving `models` (by their names, or by the given ones) with the pinned
    calibration."""
    served = {model.name: model for model in models} | named
    return create_app(
        settings,
        models=served,
        calibrations={name: PINNED_CALIBRATION for name in settings.model_names},
    )
