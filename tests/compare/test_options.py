"""Score names, their former aliases, the protocol record and the options' validation."""

from __future__ import annotations

import pytest

from cnnlens.compare import CompareOptions, parse_options, protocol
from cnnlens.compare.benchmark import summarize
from cnnlens.compare.engine import Scores
from cnnlens.compare.options import score_names, with_aliases
from cnnlens.compare.protocol import protocol_text
from cnnlens.errors import InvalidParamsError


def test_summary_names_are_the_option_names_in_table_order() -> None:
    options = CompareOptions(scores=["complexity", "road", "randomization", "deletion"], ssim=True)
    assert score_names(options) == [
        "deletion", "randomization", "randomization_ssim", "road", "complexity"
    ]  # fmt: skip
    assert score_names(CompareOptions()) == ["deletion", "insertion"]  # the default, every front


def test_former_names_read_the_new_ones() -> None:
    scores = Scores(deletion=0.25, insertion=0.5, randomization=0.75)
    assert scores["deletion_auc"] == 0.25 and scores.get("insertion_auc") == 0.5
    assert scores.get("randomization_similarity") == 0.75
    assert list(scores) == ["deletion", "insertion", "randomization"]  # no duplicates listed
    with pytest.raises(KeyError):
        Scores(insertion=0.5)["deletion_auc"]
    assert Scores().get("deletion_auc", -1.0) == -1.0
    sent = with_aliases({"deletion": 0.25, "road": 0.1})
    assert sent == {"deletion": 0.25, "road": 0.1, "deletion_auc": 0.25}


def test_a_json_summary_with_aliases_is_read_once() -> None:
    stat = {"mean": 0.5, "std": 0.0, "n": 1}
    report = {
        "model": "m",
        "options": CompareOptions().model_dump(),
        "images": [{}],
        "summary": {"grad_cam": with_aliases({"deletion": stat, "insertion": stat})},
    }
    summary = summarize(report)
    assert summary.score_names == ["deletion", "insertion"]
    assert summary.protocol == protocol(CompareOptions())  # an older answer without a record


def test_protocols_of_the_three_baselines() -> None:
    rise = protocol(CompareOptions())
    assert rise["kernel"] == {"size": 11, "sigma": 5.0, "padding": "zeros"}
    blur = protocol(CompareOptions(baseline="blur", blur_sigma=2.5))
    assert (blur["deletion"], blur["insertion"]) == ("blur", "blur")
    assert blur["kernel"] == {"size": 17, "sigma": 2.5, "padding": "reflect"}
    mean = protocol(CompareOptions(baseline="mean", steps=224, seed=4))
    assert mean["kernel"] is None and (mean["steps"], mean["points"]) == (224, 225)
    assert protocol_text(mean) == (
        "baseline mean: deletion to zeros, insertion from zeros, kernel none; 224 steps "
        "(225 points), trapezoid AUC; seed 4"
    )
    assert rise["road"] is None and rise["infidelity"] is None
    asked = protocol(CompareOptions(scores=["road", "sensitivity_max"], road_percentiles=[30]))
    assert asked["road"] == {"percentiles": [30], "imputer": "noisy linear", "noise": 0.01}
    assert asked["sensitivity_max"]["radius"] == 0.02
    assert protocol_text(asked).endswith(
        "; sensitivity_max: 10 samples, radius 0.02, max-normalized maps; road: percentiles "
        "30, noisy linear imputer"
    )


@pytest.mark.parametrize(
    "values",
    [
        {"scores": ["sharpness"]},
        {"road_percentiles": [0]},
        {"road_percentiles": [50, 50]},
        {"road_percentiles": []},
        {"n_perturb_samples": 101},
        {"perturb_radius": 0},
        {"steps": 1},
        {"unknown": 1},
    ],
)
def test_bad_options_are_invalid_params(values: dict[str, object]) -> None:
    with pytest.raises(InvalidParamsError, match="invalid compare options"):
        parse_options(values)
