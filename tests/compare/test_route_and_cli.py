"""POST /v1/compare and `cnnlens compare` on the real default model (few steps: fast)."""

from __future__ import annotations

import base64
import csv
import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from cnnlens.cli import main
from cnnlens.compare import CompareOptions, compare
from cnnlens.models import LoadedModel
from tests.conftest import EGYPTIAN_CAT, ESPRESSO
from tests.pinned import pinned_app, pinned_settings

FAST = {"steps": "4", "stages": "1"}


def _grid_size(columns: int, rows: int, aspect: float = 160 / 120) -> tuple[int, int]:
    """A comparison grid of 224 px wide tiles at the photo's aspect, 6 px gaps, 18 px captions."""
    return columns * 224 + (columns - 1) * 6, rows * (18 + round(224 / aspect)) + (rows - 1) * 6


def _png(image: Image.Image, size: tuple[int, int] = (160, 120)) -> bytes:
    buffer = io.BytesIO()
    image.resize(size).save(buffer, "PNG")
    return buffer.getvalue()


def test_route_returns_grid_and_scores_like_the_library(
    client: TestClient, default_model: LoadedModel, chelsea: Image.Image, coffee: Image.Image
) -> None:
    files = [
        ("image", ("chelsea.png", _png(chelsea), "image/png")),
        ("image", ("coffee.png", _png(coffee), "image/png")),
    ]
    data = {"method": "grad_cam,saliency", **FAST, "random_baseline": "true"}
    response = client.post("/v1/compare", files=files, data=data)
    assert response.status_code == 200, response.text[:500]
    body = response.json()
    assert body["methods"] == ["grad_cam", "saliency"]
    assert [item["name"] for item in body["images"]] == ["chelsea.png", "coffee.png"]
    assert [item["target"]["index"] for item in body["images"]] == [EGYPTIAN_CAT, ESPRESSO]
    grid = Image.open(io.BytesIO(base64.b64decode(body["grid_png"])))
    assert grid.format == "PNG" and grid.size == _grid_size(3, 2)  # 2 rows x 3 tiles
    # the same numbers as the library on the same decoded pixels
    pictures = [Image.open(io.BytesIO(_png(p))).convert("RGB") for p in (chelsea, coffee)]
    options = CompareOptions(steps=4, stages=1, random_baseline=True)
    local = compare(default_model, pictures, ["grad_cam", "saliency"], options=options).to_json()
    for remote_item, local_item in zip(body["images"], local["images"], strict=True):
        for method in ("grad_cam", "saliency", "random"):
            for score, value in local_item["scores"][method].items():
                assert remote_item["scores"][method][score] == pytest.approx(value, abs=1e-4)
        (pair,) = remote_item["agreement"]
        assert pair["methods"] == ["grad_cam", "saliency"]
        assert pair["spearman"] == pytest.approx(local_item["agreement"][0]["spearman"], abs=1e-4)
    stats = body["summary"]["grad_cam"]["deletion"]
    values = [item["scores"]["grad_cam"]["deletion"] for item in body["images"]]
    assert stats["n"] == 2 and stats["mean"] == pytest.approx(sum(values) / 2, abs=1e-5)


def test_route_answers_the_grid_png_itself(client: TestClient, chelsea: Image.Image) -> None:
    response = client.post(
        "/v1/compare",
        files={"image": ("chelsea.png", _png(chelsea), "image/png")},
        data={"method": "grad_cam", "scores": "none"},
        headers={"Accept": "image/png"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(response.content)).size == _grid_size(2, 1)


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"steps": "1"}, 422, "invalid_params"),
        ({"baseline": "zero"}, 422, "invalid_params"),
        ({"scores": "deletion,bogus"}, 422, "invalid_params"),
        ({"method": "filters"}, 422, "invalid_params"),
        ({"method": "nope"}, 422, "unknown_method"),
        ({"target": ["1", "2"]}, 422, "bad_target"),
        ({"layer": "no.such.layer"}, 422, "unknown_layer"),
        ({"model": "other"}, 404, "unknown_model"),
        ({"params": '{"grad_cam": {"bad": 1}}'}, 422, "invalid_params"),
    ],
)
def test_route_bad_input_is_a_clear_error(
    client: TestClient, small: bytes, fields: dict[str, object], status: int, code: str
) -> None:
    response = client.post(
        "/v1/compare", files={"image": ("x.png", small, "image/png")}, data=fields
    )
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


def test_route_refuses_too_many_images(client: TestClient, small: bytes) -> None:
    files = [("image", (f"{i}.png", small, "image/png")) for i in range(9)]
    response = client.post("/v1/compare", files=files, data={"scores": "none"})
    assert response.status_code == 422
    assert "1 to 8 images" in response.json()["error"]["message"]


@pytest.fixture(scope="module")
def small(chelsea: Image.Image) -> bytes:
    return _png(chelsea, (32, 24))


@pytest.fixture(scope="module")
def image_folder(
    chelsea: Image.Image, coffee: Image.Image, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    chelsea.resize((160, 120)).save(folder / "chelsea.png")
    coffee.resize((160, 120)).save(folder / "coffee.jpg")
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_cli_compare_writes_grid_and_json(image_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    status = main([
        "compare", str(image_folder / "chelsea.png"), "--method", "grad_cam", "saliency",
        "--steps", "4", "--stages", "1", "--shared-scale", "--out", str(out), "--quiet",
    ])  # fmt: skip
    assert status == 0
    grid = Image.open(out / "grid.png")
    assert grid.size == _grid_size(3, 1)
    report = json.loads((out / "compare.json").read_text())
    assert report["options"]["shared_scale"] is True and report["options"]["steps"] == 4
    (item,) = report["images"]
    assert item["target"]["index"] == EGYPTIAN_CAT
    assert set(item["scores"]) == {"grad_cam", "saliency"}
    assert len(item["curves"]["grad_cam"]["deletion"]) == 5
    assert 0 <= item["scores"]["grad_cam"]["deletion"] <= 1
    assert report["protocol"]["steps"] == 4 and report["protocol"]["kernel"]["size"] == 11


def test_cli_benchmark_over_a_folder(image_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    status = main([
        "compare", str(image_folder), "--method", "grad_cam", "--scores", "deletion",
        "--steps", "3", "--random-baseline", "--benchmark", "--out", str(out), "--quiet",
    ])  # fmt: skip
    assert status == 0
    report = json.loads((out / "compare.json").read_text())
    assert [Path(i["name"]).name for i in report["images"]] == ["chelsea.png", "coffee.jpg"]
    values = [i["scores"]["grad_cam"]["deletion"] for i in report["images"]]
    mean = sum(values) / 2
    std = abs(values[0] - values[1]) / 2  # population std of two values
    rows = list(csv.DictReader(io.StringIO((out / "benchmark.csv").read_text())))
    assert [row["method"] for row in rows] == ["grad_cam", "random"]
    assert float(rows[0]["deletion_mean"]) == pytest.approx(mean, abs=1e-5)
    assert float(rows[0]["deletion_std"]) == pytest.approx(std, abs=1e-5)
    assert rows[0]["deletion_n"] == "2"
    assert (rows[0]["baseline"], rows[0]["kernel"]) == ("rise", "11x11 sigma=5 zeros")
    assert (rows[0]["steps"], rows[0]["seed"]) == ("3", "0")
    table = (out / "benchmark.md").read_text()
    assert f"| grad_cam | {mean:.3f} ± {std:.3f} |" in table
    assert "Protocol: baseline rise: deletion to zeros, insertion from the blur" in table
    assert "kernel 11x11 sigma=5 zeros; 3 steps (4 points), trapezoid AUC; seed 0" in table
    svg = ET.fromstring((out / "benchmark.svg").read_bytes())
    assert svg.tag.endswith("svg") and any("deletion" in (t.text or "") for t in svg.iter())


def test_cli_bad_usage_exits_2(image_folder: Path, tmp_path: Path) -> None:
    chelsea = str(image_folder / "chelsea.png")
    assert main(["compare", chelsea, "--method", "filters", "--out", str(tmp_path)]) == 2
    assert main(["compare", chelsea, "--steps", "1", "--out", str(tmp_path)]) == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", str(tmp_path / "missing.png"), "--out", str(tmp_path)])
    assert exit_info.value.code == 2


def test_cli_compare_on_a_server_matches_local(
    default_model: LoadedModel, image_folder: Path, tmp_path: Path
) -> None:
    from tests.client.live_server import live_server

    app = pinned_app(pinned_settings({"warmup": False}), default_model)
    common = ["--method", "grad_cam", "--scores", "deletion", "sparseness", "--steps", "3"]
    common += ["--benchmark", "--target", "Egyptian cat", "--quiet"]
    common += ["--baseline", "blur", "--blur-sigma", "3", "--seed", "2"]
    images = [str(image_folder / "chelsea.png"), str(image_folder / "coffee.jpg")]
    with live_server(app) as url:
        assert (
            main(["compare", *images, *common, "--out", str(tmp_path / "r"), "--server", url]) == 0
        )
    assert main(["compare", *images, *common, "--out", str(tmp_path / "l")]) == 0
    remote = json.loads((tmp_path / "r" / "compare.json").read_text())
    local = json.loads((tmp_path / "l" / "compare.json").read_text())
    assert remote["server"] == url and local["server"] is None
    assert [i["name"] for i in remote["images"]] == images
    for mine, theirs in zip(local["images"], remote["images"], strict=True):
        assert mine["target"]["index"] == theirs["target"]["index"] == EGYPTIAN_CAT
        assert mine["scores"]["grad_cam"]["deletion"] == pytest.approx(
            theirs["scores"]["grad_cam"]["deletion"], abs=1e-3
        )
    assert remote["summary"]["grad_cam"]["deletion"]["n"] == 2
    assert remote["protocol"] == local["protocol"]  # the options reached the server
    assert remote["protocol"]["kernel"] == {"size": 19, "sigma": 3.0, "padding": "reflect"}
    assert remote["protocol"]["seed"] == 2
    assert mine["scores"]["grad_cam"]["sparseness"] == pytest.approx(
        theirs["scores"]["grad_cam"]["sparseness"], abs=1e-3
    )
    width, row = _grid_size(2, 1)  # the server's one-row grid per image, stacked
    assert Image.open(tmp_path / "r" / "grid.png").size == (width, 2 * row)
    assert (tmp_path / "r" / "benchmark.md").read_text().startswith("| method |")


def test_cli_goes_on_past_an_unreadable_image(image_folder: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "out"
    status = main([
        "compare", str(broken), str(image_folder / "chelsea.png"), "--method", "grad_cam",
        "--scores", "none", "--out", str(out), "--quiet",
    ])  # fmt: skip
    assert status == 1
    report = json.loads((out / "compare.json").read_text())
    assert [item["name"] for item in report["images"]] == [str(image_folder / "chelsea.png")]
    (failure,) = report["failed"]
    assert failure["image"] == str(broken) and failure["error"]
    assert report["images"][0]["scores"] == {"grad_cam": {}}
    assert Image.open(out / "grid.png").size == _grid_size(2, 1)


def test_route_takes_the_new_scores_and_records_the_protocol(
    client: TestClient, default_model: LoadedModel, chelsea: Image.Image
) -> None:
    data = {
        "method": "grad_cam,saliency", "steps": "4", "baseline": "blur", "blur_sigma": "3",
        "scores": "deletion,infidelity,sparseness,complexity", "n_perturb_samples": "2",
        "infidelity_noise": "0.01", "seed": "5",
    }  # fmt: skip
    response = client.post(
        "/v1/compare", files={"image": ("c.png", _png(chelsea), "image/png")}, data=data
    )
    assert response.status_code == 200, response.text[:500]
    body = response.json()
    assert body["protocol"]["baseline"] == "blur"
    assert body["protocol"]["kernel"] == {"size": 19, "sigma": 3.0, "padding": "reflect"}
    assert (body["protocol"]["steps"], body["protocol"]["seed"]) == (4, 5)
    assert body["protocol"]["infidelity"] == {
        "n_perturb_samples": 2, "noise": 0.01, "normalization": "max"
    }  # fmt: skip
    scores = body["images"][0]["scores"]["saliency"]
    assert set(scores) == {"deletion", "deletion_auc", "infidelity", "sparseness", "complexity"}
    assert scores["deletion_auc"] == scores["deletion"]  # the former name, for one release
    assert body["summary"]["saliency"]["deletion_auc"] == body["summary"]["saliency"]["deletion"]
    picture = Image.open(io.BytesIO(_png(chelsea))).convert("RGB")
    options = CompareOptions(
        steps=4, baseline="blur", blur_sigma=3, scores=["deletion", "infidelity", "sparseness",
        "complexity"], n_perturb_samples=2, infidelity_noise=0.01, seed=5,
    )  # fmt: skip
    local = compare(default_model, picture, ["grad_cam", "saliency"], options=options)
    for method in ("grad_cam", "saliency"):
        for name, value in local.images[0].scores[method].items():
            assert body["images"][0]["scores"][method][name] == pytest.approx(value, abs=1e-4)


@pytest.mark.parametrize(
    "fields",
    [
        {"scores": "road", "road_percentiles": "0,50"},
        {"scores": "road", "road_percentiles": "50,x"},
        {"scores": "infidelity", "n_perturb_samples": "0"},
        {"scores": "sensitivity_max", "perturb_radius": "-1"},
        {"scores": "infidelity", "infidelity_noise": "nan"},
        {"blur_sigma": "0"},
    ],
)
def test_route_refuses_bad_score_options(
    client: TestClient, small: bytes, fields: dict[str, str]
) -> None:
    response = client.post(
        "/v1/compare", files={"image": ("x.png", small, "image/png")}, data=fields
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_params"


def test_route_charges_the_new_scores_to_the_budget(
    client: TestClient, default_model: LoadedModel, small: bytes
) -> None:
    """ROAD's sparse solves and sensitivity's perturbed passes count: with the tests' budget
    (1500 forwards at 25 ms), ROAD on four maps fits one image, not two."""
    from cnnlens.compare.options import parse_options
    from cnnlens.methods.run import plan_run
    from cnnlens.service.runtime.budget import IMPUTE_SECONDS_PER_PIXEL, compare_plan
    from tests.pinned import PINNED_CALIBRATION

    road = {"scores": "road", "method": "grad_cam,saliency,guided_backprop"}
    road["random_baseline"] = "true"
    two = [("image", (f"{i}.png", small, "image/png")) for i in range(2)]
    response = client.post("/v1/compare", files=two, data=road)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "over_budget"
    assert "lower image fields to at most 1" in error["message"]
    cheap = client.post("/v1/compare", files=two, data={**road, "scores": "sparseness"})
    assert cheap.status_code == 200, cheap.text
    # one map's ROAD: 18 forwards and 9 images' worth of removed pixels, in forwards
    run = plan_run(default_model, [("grad_cam", None)])
    with_road, without = (
        compare_plan(run, 1, parse_options(scores=scores))._estimate(
            default_model, PINNED_CALIBRATION, 1, 16, 0
        )
        for scores in (["road"], [])
    )
    pixels = 224 * 224 * sum(2 * (100 - p) / 100 for p in range(10, 100, 10))
    expected = 18 + pixels * IMPUTE_SECONDS_PER_PIXEL / PINNED_CALIBRATION.forward_s
    assert with_road.forward_equivalents - without.forward_equivalents == pytest.approx(expected)
    files = {"image": ("x.png", small, "image/png")}
    many = {"scores": "sensitivity_max", "method": "occlusion", "n_perturb_samples": "100"}
    response = client.post("/v1/compare", files=files, data=many)
    assert response.status_code == 422, response.text
    assert "lower n_perturb_samples to at most" in response.json()["error"]["message"]


def test_cli_new_scores_and_the_protocol_line(
    image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    status = main([
        "compare", str(image_folder / "chelsea.png"), "--method", "grad_cam", "--scores",
        "infidelity", "sparseness", "complexity", "--n-perturb-samples", "2",
        "--infidelity-noise", "0.01", "--baseline", "mean", "--out", str(out),
    ])  # fmt: skip
    assert status == 0
    report = json.loads((out / "compare.json").read_text())
    assert report["options"]["n_perturb_samples"] == 2
    assert report["protocol"]["infidelity"]["noise"] == 0.01
    assert set(report["images"][0]["scores"]["grad_cam"]) == {
        "infidelity", "sparseness", "complexity"
    }  # fmt: skip
    printed = capsys.readouterr().out
    assert "protocol: baseline mean: deletion to zeros, insertion from zeros" in printed
    assert "; infidelity: 2 samples, noise 0.01, max-normalized maps" in printed
    assert "grad_cam: infidelity " in printed and "deletion_auc" not in printed
