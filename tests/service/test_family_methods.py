"""The new attribution families on every front: GET /v1/methods with their params, POST
/v1/explain (the served array equals the library's), the client and the CLI (their arrays
equal `explain`'s), POST /v1/compare, an audit's findings, and the refusal of a method the
model cannot serve as a 422 with the reason, here and in an audit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from cnnlens.audit import AuditConfig, local
from cnnlens.cli import main
from cnnlens.client import Client
from cnnlens.errors import IncompatibleModelError
from cnnlens.explain import explain
from cnnlens.imageio import decode_image
from cnnlens.models import LoadedModel
from tests.service.conftest import assert_error, decode_array, decode_png, upload

NEW = [
    "deeplift", "deeplift_shap", "gradient_shap", "input_x_gradient", "lime", "kernel_shap",
    "feature_ablation", "lrp", "hirescam", "xgrad_cam", "layer_cam", "eigen_cam", "ablation_cam",
]  # fmt: skip


def test_every_new_method_is_listed_with_its_params(client: TestClient) -> None:
    methods = {item["name"]: item for item in client.get("/v1/methods").json()["methods"]}
    assert set(NEW) <= set(methods)
    for name in NEW:
        assert methods[name]["route"] == "/v1/explain"
        assert methods[name]["paper"]
    lrp = methods["lrp"]["params"]["properties"]["composite"]
    assert lrp["enum"] == [
        "epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1_flat", "epsilon_plus",
        "epsilon_alpha2_beta1",
    ]  # fmt: skip
    assert lrp["default"] == "epsilon_plus_flat"
    shap = methods["gradient_shap"]["params"]["properties"]
    assert {"n_samples", "stdevs", "seed", "baselines"} <= set(shap)
    deeplift = methods["deeplift"]["params"]["properties"]["baseline"]
    assert deeplift["default"] == "black" and "white" in deeplift["enum"]
    variant = methods["smoothgrad"]["params"]["properties"]["variant"]
    assert variant["enum"] == ["smoothgrad", "vargrad"]
    assert methods["lime"]["params"]["properties"]["superpixels"]["enum"] == ["slic", "grid"]


def test_explain_serves_the_new_maps_as_the_library_computes_them(
    client: TestClient, default_model: LoadedModel, small_png: bytes
) -> None:
    names = ["deeplift", "hirescam", "eigen_cam", "feature_ablation"]
    params = {"feature_ablation": {"segments": 8}}
    response = client.post(
        "/v1/explain",
        files=upload(small_png, "chelsea.png"),
        data={"method": ",".join(names), "output": "array,heatmap", "params": json.dumps(params)},
    )
    assert response.status_code == 200, response.text[:300]
    served = {item["method"]: item for item in response.json()["explanations"]}
    assert list(served) == names
    local_maps = explain(default_model, decode_image(small_png), names, params=params)
    for item, expected in zip(served.values(), local_maps, strict=True):
        assert decode_png(item["heatmap_png"]).size == (96, 64)
        array = decode_array(item["array"])
        scale = float(np.abs(expected.map).max())
        np.testing.assert_allclose(array, expected.map, rtol=1e-4, atol=1e-5 * scale)


def test_lrp_on_a_model_with_residual_sums_is_a_422_with_the_reason(
    client: TestClient, small_png: bytes
) -> None:
    response = client.post("/v1/explain", files=upload(small_png), data={"method": "lrp"})
    error = assert_error(response, 422)
    assert "residual sums" in error["message"]


def test_compare_takes_the_new_methods(client: TestClient, chelsea: Image.Image) -> None:
    import io

    buffer = io.BytesIO()
    chelsea.resize((96, 64)).save(buffer, "PNG")
    response = client.post(
        "/v1/compare",
        files=[("image", ("chelsea.png", buffer.getvalue(), "image/png"))],
        data={"method": "hirescam,xgrad_cam,grad_cam", "steps": "4", "stages": "1"},
    )
    assert response.status_code == 200, response.text[:300]
    assert response.json()["methods"] == ["hirescam", "xgrad_cam", "grad_cam"]


def test_an_audit_refuses_lrp_before_any_image(
    tmp_path: Path, default_model: LoadedModel, small_png: bytes
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").write_bytes(small_png)
    config = AuditConfig(methods=("grad_cam", "lrp"))
    with pytest.raises(IncompatibleModelError, match="residual sums"):
        local.run_audit(images, tmp_path / "out", config, model=default_model)
    assert not (tmp_path / "out/results.jsonl").exists()


def test_the_client_and_the_cli_serve_the_new_maps(
    client: TestClient,
    default_model: LoadedModel,
    small_png: bytes,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    params = {
        "gradient_shap": {"n_samples": 2, "seed": 3},
        "kernel_shap": {"superpixels": "grid", "segments": 6, "n_samples": 12, "seed": 1},
        "ablation_cam": {"channels": 4},
    }
    names = ["gradient_shap", "layer_cam", "kernel_shap", "ablation_cam"]
    expected = {
        item.method: item.map
        for item in explain(default_model, decode_image(small_png), names, params=params)
    }
    remote = Client(http_client=client).explain(  # type: ignore[arg-type]
        small_png, names, params=params, output=["array"]
    )
    assert [item.method for item in remote.explanations] == names
    monkeypatch.setattr("cnnlens.models.load_model", lambda *args, **kwargs: default_model)
    path = tmp_path / "chelsea.png"
    path.write_bytes(small_png)
    out = tmp_path / "out"
    argv = ["explain", str(path), "--method", ",".join(names), "--params", json.dumps(params)]
    assert main([*argv, "--array", "--out", str(out), "-q"]) == 0
    for item in remote.explanations:
        scale = float(np.abs(expected[item.method]).max())
        assert scale > 0
        for found in (item.map, *(np.load(p) for p in out.glob(f"chelsea_{item.method}_*.npy"))):
            np.testing.assert_allclose(
                np.squeeze(found), np.squeeze(expected[item.method]), rtol=1e-4, atol=1e-5 * scale
            )
        assert len(list(out.glob(f"chelsea_{item.method}_*.npy"))) == 1


def test_an_audit_runs_the_new_methods(
    tmp_path: Path, default_model: LoadedModel, small_png: bytes, coffee: Image.Image
) -> None:
    """Each method's map of each image is analysed: a box over the whole image holds all its
    energy, the map is not degenerate, and its overlay is written."""
    import io

    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").write_bytes(small_png)
    buffer = io.BytesIO()
    coffee.resize((80, 60)).save(buffer, "PNG")
    (images / "b.png").write_bytes(buffer.getvalue())
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("a.png,0,0,96,64\nb.png,0,0,80,60\n", encoding="utf-8")
    methods = ("deeplift", "input_x_gradient", "eigen_cam", "xgrad_cam")
    out = tmp_path / "out"
    local.run_audit(images, out, AuditConfig(methods=methods), boxes=boxes, model=default_model)
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["name"] for r in records) == ["a.png", "b.png"]
    for record in records:
        assert record["status"] == "ok" and set(record["maps"]) == set(methods)
        for method in methods:
            findings = record["maps"][method]
            assert findings["degenerate"] is False
            assert findings["box_energy"] == pytest.approx(1.0)
            overlay = out / record["overlays"][method]
            assert overlay.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
