"""The protocol a comparison followed, recorded in every result (JSON, CSV, report, page,
CLI) so that its numbers can be reproduced and set beside published ones."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from cnnlens.compare.faithfulness import RISE_KERNEL_SIGMA, RISE_KERNEL_SIZE, substrates
from cnnlens.compare.options import CompareOptions

IMPUTER_NOISE = 0.01  # pytorch-grad-cam's NoisyLinearImputer default, used by `road`


def protocol(options: CompareOptions) -> dict[str, Any]:
    """What the curves (and any other score asked for) did, as plain JSON; the settings of a
    score not asked for are null."""
    deletion, insertion = substrates(options.baseline)
    record: dict[str, Any] = {
        "baseline": options.baseline,
        "deletion": deletion,  # what deleted pixels become
        "insertion": insertion,  # what insertion starts from
        "kernel": _kernel(options),
        "steps": options.steps,
        "points": options.steps + 1,
        "probability": "of the explained class, under the model's head",
        "auc": "trapezoid",
        "ties": "seeded random key",
        "seed": options.seed,
    }
    wanted = set(options.scores)
    record["infidelity"] = (
        {
            "n_perturb_samples": options.n_perturb_samples,
            "noise": options.infidelity_noise,
            "normalization": "max",
        }
        if "infidelity" in wanted
        else None
    )
    record["sensitivity_max"] = (
        {
            "n_perturb_samples": options.n_perturb_samples,
            "radius": options.perturb_radius,
            "norm": "fro",
            "normalization": "max",
        }
        if "sensitivity_max" in wanted
        else None
    )
    record["road"] = (
        {
            "percentiles": list(options.road_percentiles),
            "imputer": "noisy linear",
            "noise": IMPUTER_NOISE,
        }
        if "road" in wanted
        else None
    )
    return record


def _kernel(options: CompareOptions) -> dict[str, Any] | None:
    if options.baseline == "rise":
        return {"size": RISE_KERNEL_SIZE, "sigma": RISE_KERNEL_SIGMA, "padding": "zeros"}
    if options.baseline == "blur":
        size = 2 * math.ceil(3 * options.blur_sigma) + 1
        return {"size": size, "sigma": options.blur_sigma, "padding": "reflect"}
    return None


def kernel_text(record: Mapping[str, Any]) -> str:
    """'11x11 sigma=5 zeros', or 'none' without a blur."""
    kernel = record.get("kernel")
    if not kernel:
        return "none"
    size = kernel.get("size")
    return f"{size}x{size} sigma={kernel.get('sigma'):g} {kernel.get('padding')}"


def protocol_text(record: Mapping[str, Any]) -> str:
    """One line: baseline, substrates, kernel, schedule and seed, then the settings of
    infidelity, sensitivity_max and road when they were asked for."""
    words = {"zeros": "zeros", "rise_blur": "the blur", "blur": "the blur"}
    steps = record.get("steps")
    text = (
        f"baseline {record.get('baseline')}: deletion to "
        f"{words.get(str(record.get('deletion')), record.get('deletion'))}, insertion from "
        f"{words.get(str(record.get('insertion')), record.get('insertion'))}, kernel "
        f"{kernel_text(record)}; {steps} steps ({record.get('points')} points), trapezoid "
        f"AUC; seed {record.get('seed')}"
    )
    return "; ".join([text, *_score_settings(record)])


def _score_settings(record: Mapping[str, Any]) -> list[str]:
    """The settings of infidelity, sensitivity_max and road, for those asked for."""
    parts: list[str] = []
    if infidelity := record.get("infidelity"):
        parts.append(
            f"infidelity: {infidelity['n_perturb_samples']} samples, noise "
            f"{infidelity['noise']:g}, max-normalized maps"
        )
    if sensitivity := record.get("sensitivity_max"):
        parts.append(
            f"sensitivity_max: {sensitivity['n_perturb_samples']} samples, radius "
            f"{sensitivity['radius']:g}, max-normalized maps"
        )
    if road := record.get("road"):
        percentiles = ",".join(str(p) for p in road["percentiles"])
        parts.append(f"road: percentiles {percentiles}, {road['imputer']} imputer")
    return parts
