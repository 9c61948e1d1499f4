"""Hostile requests that would take the machine, against the real default model with a pinned
budget: each is refused up front (422 over_budget / response_too_large), naming the param to
change and a value that does fit, and none of them reaches the model's worker."""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from cnnlens.compare.options import parse_options
from cnnlens.errors import OverBudgetError, ResponseTooLargeError
from cnnlens.methods.cost import Budget, check_methods_budget, layer_channels
from cnnlens.methods.run import plan_run
from cnnlens.models import LoadedModel
from cnnlens.response_size import check_response_size
from cnnlens.service.runtime.budget import compare_plan
from cnnlens.service.settings import Limits
from tests.pinned import pinned_app, pinned_settings

MODEL = "efficientnet_lite0"
# About what the calibration gives efficientnet_lite0 on 2 CPU cores (60 s x 0.5 at ~27 ms).
FORWARD_PASSES = 1000
SIXTEEN = [str(index) for index in range(16)]
SHAPE = (3, 224, 224)


@dataclass
class Served:
    http: TestClient
    model: LoadedModel
    budget: Budget
    limits: Limits
    data_dir: Path
    submitted: list[Any] = field(default_factory=list)


@pytest.fixture(scope="module")
def served(
    default_model: LoadedModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    data_dir = tmp_path_factory.mktemp("budget-data")
    settings = pinned_settings(
        {"warmup": False, "data_dir": str(data_dir)},
        budget_forward_passes=FORWARD_PASSES,
        budget_memory_bytes=3 * 1024**3 // 2,
    )
    app = pinned_app(settings, default_model)
    with TestClient(app, raise_server_exceptions=False) as http:
        state = app.state.service
        assert state.wait_ready(60), state.load_error
        served = Served(http, default_model, state.budget(MODEL), settings.limits, data_dir)
        for lane in (state.worker(MODEL), state.express[MODEL]):
            lane.submit = _counting(lane.submit, served.submitted)  # type: ignore[method-assign]
        yield served


def _counting(submit: Any, submitted: list[Any]) -> Any:
    def counting(*args: Any, **kwargs: Any) -> Any:
        submitted.append(args)
        return submit(*args, **kwargs)

    return counting


@pytest.fixture(scope="module")
def sixteen_megapixels(chelsea: Image.Image) -> bytes:
    buffer = io.BytesIO()
    chelsea.resize((4000, 4000), Image.Resampling.NEAREST).save(buffer, "JPEG", quality=60)
    return buffer.getvalue()


def _refused(served: Served, response: Any, code: str) -> tuple[str, int]:
    """The refusal's message and the value it names; nothing reached the worker."""
    assert response.status_code == 422, response.text[:400]
    error = response.json()["error"]
    assert error["code"] == code, error
    assert str(served.data_dir) not in error["message"]
    assert served.submitted == []
    found = re.search(r"at (?:most|least) (\d+)", error["message"])
    assert found, error["message"]
    return error["message"], int(found.group(1))


def _methods_fit(served: Served, methods: list[tuple[str, dict[str, Any]]], targets: int) -> bool:
    try:
        check_methods_budget(
            methods,
            targets,
            SHAPE,
            served.budget,
            layer_channels=layer_channels(served.model, None),
        )
    except OverBudgetError:
        return False
    return True


def _explain(served: Served, image: bytes, **data: Any) -> Any:
    return served.http.post("/v1/explain", data=data, files={"image": ("p.jpg", image)})


@dataclass(frozen=True)
class Hostile:
    """One hostile request: its method, params and targets, and the param it must name."""

    method: str
    params: dict[str, Any]
    targets: int
    param: str
    lower: bool = True  # the fix lowers the param (else raises it)


HOSTILE = {
    "smoothgrad 1024 samples x 16 targets": Hostile("smoothgrad", {"samples": 1024}, 16, "samples"),
    "occlusion window 1 stride 1": Hostile(
        "occlusion", {"window": 1, "stride": 1}, 1, "stride", lower=False
    ),
    "integrated gradients 1024 steps x 16 targets": Hostile(
        "integrated_gradients", {"steps": 1024}, 16, "steps"
    ),
    "score_cam over every channel": Hostile("score_cam", {"channels": "all"}, 1, "channels"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_an_explain_over_budget_is_refused_naming_the_value_that_fits(
    served: Served, small_jpeg: bytes, name: str
) -> None:
    case = HOSTILE[name]
    response = _explain(
        served,
        small_jpeg,
        method=case.method,
        target=SIXTEEN[: case.targets],
        params=json.dumps({case.method: case.params}),
    )
    message, value = _refused(served, response, "over_budget")
    verb = "lower" if case.lower else "raise"
    assert f"{verb} {case.param} to" in message
    fits = {**case.params, case.param: value}
    one_past = {**case.params, case.param: value + 1 if case.lower else value - 1}
    assert _methods_fit(served, [(case.method, fits)], case.targets)
    assert not _methods_fit(served, [(case.method, one_past)], case.targets)


@pytest.mark.parametrize(
    ("route", "data", "method"),
    [
        ("/v1/activation-max", {"target": "1", "params": '{"steps": 2000}'}, "activation_max"),
        ("/v1/adversarial", {"params": '{"attack": "pgd", "steps": 1000}'}, "adversarial"),
    ],
)
def test_a_method_route_over_budget_is_refused(
    served: Served, small_jpeg: bytes, route: str, data: dict[str, str], method: str
) -> None:
    files = {"image": ("p.jpg", small_jpeg)} if method == "adversarial" else None
    message, steps = _refused(
        served, served.http.post(route, data=data, files=files), "over_budget"
    )
    assert "lower steps to at most" in message
    extra = {"attack": "pgd", "epsilon": 8} if method == "adversarial" else {}
    assert _methods_fit(served, [(method, {**extra, "steps": steps})], 1)
    assert not _methods_fit(served, [(method, {**extra, "steps": steps + 1})], 1)


def test_sixteen_megapixels_with_sixteen_targets_is_refused_before_rendering(
    served: Served, sixteen_megapixels: bytes
) -> None:
    response = _explain(served, sixteen_megapixels, method="grad_cam", target=SIXTEEN)
    message, targets = _refused(served, response, "response_too_large")
    assert "megapixel" in message and f"at most {targets} targets" in message
    assert targets == 2  # 4000 x 4000 x 2 targets x (overlay, heatmap) = 64 megapixels


def test_arrays_of_eight_targets_at_sixteen_megapixels_are_refused(
    served: Served, sixteen_megapixels: bytes
) -> None:
    response = _explain(
        served, sixteen_megapixels, method="grad_cam", target=SIXTEEN[:8], output="array"
    )
    message, targets = _refused(served, response, "response_too_large")
    assert "MB" in message

    def fits(count: int) -> bool:
        try:
            check_response_size(
                4000,
                4000,
                count,
                1,
                ("array",),
                max_bytes=served.limits.max_response_bytes,
                max_rendered_pixels=served.limits.max_rendered_pixels,
            )
        except ResponseTooLargeError:
            return False
        return True

    assert fits(targets) and not fits(targets + 1)


def test_a_comparison_over_budget_names_its_steps(served: Served, small_jpeg: bytes) -> None:
    data = {"method": "grad_cam", "scores": "deletion,insertion", "steps": "512"}
    response = served.http.post("/v1/compare", data=data, files={"image": ("p.jpg", small_jpeg)})
    message, steps = _refused(served, response, "over_budget")
    assert "lower steps to at most" in message

    def fits(count: int) -> bool:
        options = parse_options(scores=["deletion", "insertion"], steps=count)
        plan = compare_plan(plan_run(served.model, [("grad_cam", None)]), 1, options)
        try:
            plan.admit(served.model, served.budget, served.limits)
        except OverBudgetError:
            return False
        return True

    assert fits(steps) and not fits(steps + 1)


def test_an_audit_whose_batches_are_over_budget_is_refused_before_its_upload_is_kept(
    served: Served, small_jpeg: bytes
) -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("cat.jpg", small_jpeg)
    response = served.http.post(
        "/v1/audits",
        data={"method": "smoothgrad", "batch_size": "256"},
        files={"archive": ("images.zip", archive.getvalue(), "application/zip")},
    )
    message, batch = _refused(served, response, "over_budget")
    assert "lower batch_size to at most" in message
    assert _methods_fit(served, [("smoothgrad", {})], batch)  # one target per image
    assert not _methods_fit(served, [("smoothgrad", {})], batch + 1)
    assert served.http.get("/v1/audits").json()["audits"] == []


def test_a_request_in_budget_still_runs(served: Served, small_jpeg: bytes) -> None:
    response = _explain(served, small_jpeg, method="grad_cam", target=SIXTEEN)
    assert response.status_code == 200, response.text[:300]
    assert len(response.json()["explanations"]) == 16
    assert len(served.submitted) == 1
    served.submitted.clear()


@pytest.fixture(scope="module")
def small_jpeg(chelsea: Image.Image) -> bytes:
    buffer = io.BytesIO()
    chelsea.resize((120, 80)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()
