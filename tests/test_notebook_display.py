"""What a notebook user sees: the package's public API in dir() and help(), a callable
`cnnlens.compare`, short reprs, and PNG / HTML displays of explanations and comparisons."""

from __future__ import annotations

import importlib
import inspect
import io
import pydoc
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cnnlens
from cnnlens.compare import CompareOptions
from cnnlens.display import map_scale
from cnnlens.models import LoadedModel
from tests.conftest import EGYPTIAN_CAT


def test_dir_and_all_list_the_public_api_not_the_plumbing() -> None:
    listed = dir(cnnlens)
    for name in ("load_model", "wrap", "explain", "compare", "attribute", "run_audit"):
        assert name in listed and name in cnnlens.__all__
    for plumbing in ("Any", "TYPE_CHECKING", "sys", "types", "lazy_exports"):
        assert plumbing not in listed
    for name in cnnlens.__all__:
        assert getattr(cnnlens, name) is not None  # every listed name resolves


def test_help_lists_the_functions() -> None:
    text = pydoc.render_doc(cnnlens, renderer=pydoc.plaintext)
    functions = text[text.index("FUNCTIONS") :]
    for name in ("load_model", "explain", "wrap", "attribute", "run_audit"):
        assert f"\n    {name}(" in functions, name


def test_compare_is_the_subpackage_and_callable(
    default_model: LoadedModel, chelsea: Image.Image
) -> None:
    import cnnlens.compare as package

    assert cnnlens.compare is package is importlib.import_module("cnnlens.compare")
    assert package.CompareOptions is CompareOptions  # still the subpackage
    assert callable(cnnlens.compare)
    assert "images" in inspect.signature(cnnlens.compare).parameters
    options = CompareOptions(scores=[])
    called = cnnlens.compare(default_model, chelsea, ["grad_cam", "saliency"], options=options)
    direct = package.compare(default_model, chelsea, ["grad_cam", "saliency"], options=options)
    assert called.to_json()["images"][0]["agreement"] == direct.to_json()["images"][0]["agreement"]


@pytest.fixture(scope="module")
def explanations(default_model: LoadedModel, chelsea: Image.Image) -> cnnlens.Explanations:
    params = {"occlusion": {"window": 56, "stride": 56}}
    return cnnlens.explain(default_model, chelsea, ["grad_cam", "occlusion"], params=params)


def test_reprs_are_short_and_dump_no_arrays(
    default_model: LoadedModel, explanations: cnnlens.Explanations
) -> None:
    model = repr(default_model)
    assert model.startswith("LoadedModel(name='efficientnet_lite0', head='softmax'")
    assert "classes=1000" in model and "input=224x224" in model and len(model) < 200
    one = repr(explanations[0])
    assert one.startswith("Explanation(method='grad_cam', target='Egyptian cat' (285, ")
    assert "map=float32 300x451" in one and "array(" not in one and len(one) < 200
    both = repr(explanations)
    assert "451x300 image: 2 maps (grad_cam/285, occlusion/285)" in both and len(both) < 200


def _png(data: bytes | None) -> Image.Image:
    assert data is not None and data.startswith(b"\x89PNG")
    return Image.open(io.BytesIO(data)).convert("RGB")


def test_an_explanation_shows_its_overlay_with_a_legend(
    explanations: cnnlens.Explanations,
) -> None:
    grad_cam, occlusion = explanations
    figure = _png(grad_cam._repr_png_())
    overlay = grad_cam.overlay()  # 451 x 300: shown at its own size, under a title line
    assert figure.width == overlay.width
    pixels = np.asarray(figure, dtype=np.int16)
    top = 20  # the title line
    shown = pixels[top : top + overlay.height]
    assert np.abs(shown - np.asarray(overlay, dtype=np.int16)).mean() < 1
    bar = pixels[top + overlay.height + 6, 4:260]  # the colour bar: jet from blue to red
    assert bar[0, 2] > 100 > bar[0, 0] and bar[-1, 0] > 100 > bar[-1, 2]
    scale = map_scale(grad_cam.map)
    assert not scale.signed and scale.low >= 0 and scale.top <= scale.high
    assert map_scale(occlusion.map).signed  # occlusion's change of the loss has both signs
    html = grad_cam._repr_html_()
    assert html.count("<img ") == 1 and "Egyptian cat (285)" in html and "layer bn2" in html


def test_explanations_show_a_row_per_method_and_the_predictions(
    explanations: cnnlens.Explanations,
) -> None:
    html = explanations._repr_html_()
    assert html.count("<tr>") >= 2 + 5  # two methods, five predictions
    assert html.count("<img ") == 2 and "Egyptian cat" in html and "tiger cat" in html
    strip = _png(explanations._repr_png_())
    assert strip.width > 3 * 200  # the photo and two overlays side by side


def test_a_comparison_shows_its_grid_and_score_table(
    default_model: LoadedModel, chelsea: Image.Image
) -> None:
    options = CompareOptions(steps=2, scores=["deletion"], random_baseline=True)
    result = cnnlens.compare(default_model, chelsea, ["grad_cam", "saliency"], options=options)
    text = repr(result)
    assert text == (
        "<Comparison on efficientnet_lite0: 1 images x grad_cam, saliency; scores deletion>"
    )
    assert "array(" not in repr(result.images[0]) and len(repr(result.images[0])) < 200
    assert _png(result._repr_png_()).size == result.grid().size
    html = result._repr_html_()
    assert html.count("<img ") == 1 and "deletion" in html
    deletion = result.images[0].scores["grad_cam"]["deletion_auc"]
    assert f"{deletion:.3f}" in html  # the score itself, in its row
    assert "grad_cam · saliency" in html  # the agreement table
    assert "random" in html  # the reference map's row


def test_an_audit_run_shows_its_summary(default_model: LoadedModel, tmp_path: Path) -> None:
    from cnnlens.audit import AuditConfig, run_audit

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(photos / "a.png")
    (tmp_path / "labels.csv").write_text("a.png,tabby\nb.png,tabby\n")
    run = run_audit(
        photos, tmp_path / "out", AuditConfig(), labels=tmp_path / "labels.csv",
        model=default_model, progress=False,
    )  # fmt: skip
    assert repr(run).startswith(f"<AuditRun {run.job.id}: done, 1 of 1 images")
    html = run._repr_html_()
    assert "labels rows without an image" in html and "b.png" in html
    assert str(tmp_path / "out" / "index.html") in html


def test_the_train_mode_warning_comes_once_per_model(recwarn: pytest.WarningsRecorder) -> None:
    from torch import nn

    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                           nn.Linear(4, 2))  # fmt: skip
    model = cnnlens.wrap(module, preprocessing={"input_size": 16})  # train mode: warns
    picture = Image.new("RGB", (20, 20), (120, 30, 200))
    for _ in range(3):
        cnnlens.explain(model, picture, ["grad_cam"])
    cnnlens.wrap(module)  # the same module, wrapped again: still once
    warned = [w for w in recwarn.list if "train mode" in str(w.message)]
    assert len(warned) == 1, [str(w.message) for w in warned]


def test_did_you_mean_for_methods_labels_layers_and_models(default_model: LoadedModel) -> None:
    from cnnlens.errors import CnnlensError

    def message(call: object) -> str:
        with pytest.raises(CnnlensError) as caught:
            call()  # type: ignore[operator]
        return str(caught.value)

    picture = Image.new("RGB", (32, 32))
    assert "did you mean 'grad_cam'" in message(lambda: cnnlens.methods.get_method("gradcam"))
    assert "did you mean 'Egyptian cat'" in message(
        lambda: cnnlens.explain(default_model, picture, target="egyptian kat")
    )
    x = default_model.preprocessing(picture)
    layer = message(lambda: cnnlens.attribute("grad_cam", default_model, x, layer="bn3"))
    assert "did you mean 'bn2'" in layer
    assert "`cnnlens layers efficientnet_lite0` or GET /v1/models/efficientnet_lite0" in layer
    nowhere = message(lambda: cnnlens.attribute("grad_cam", default_model, x, layer="xyzzy"))
    assert "did you mean" not in nowhere and "GET /v1/models/efficientnet_lite0" in nowhere
    assert "did you mean 'efficientnet_lite0'" in message(
        lambda: cnnlens.load_model("efficientnet-lite0")
    )
    assert "did you mean 'resnet50'" in message(
        lambda: cnnlens.load_model("torchvision:resnet05", weights="none")
    )
    assert EGYPTIAN_CAT == 285


def test_the_client_s_comparison_shows_its_grid_and_scores(
    default_model: LoadedModel, chelsea: Image.Image
) -> None:
    from fastapi.testclient import TestClient

    from cnnlens.client import Client
    from tests.pinned import pinned_app, pinned_settings

    app = pinned_app(pinned_settings({"warmup": False}), default_model)
    buffer = io.BytesIO()
    chelsea.resize((96, 64)).save(buffer, "PNG")
    with TestClient(app) as served:
        assert app.state.service.wait_ready(60)
        result = Client(http_client=served).compare(
            buffer.getvalue(), ["grad_cam", "saliency"], scores="deletion", steps=2
        )
    assert "array(" not in repr(result) and len(repr(result)) < 2000
    assert _png(result._repr_png_()).size == result.grid.size  # type: ignore[union-attr]
    html = result._repr_html_()
    assert html.count("<img ") == 1 and "deletion" in html and "grad_cam · saliency" in html
    assert f"{result.images[0].scores['grad_cam']['deletion_auc']:.3f}" in html
