"""On a CUDA device: every map method gives the CPU's map, tensors stay on the device, CUDA
memory comes back, and the service and audits run there. Skipped without a GPU (CI has none).

TF32 is turned off for the comparisons, so that CUDA and the CPU compute in the same
precision; bf16 autocast is checked against fp32 with its own, wider tolerance.
"""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from cnnlens.audit import AuditConfig, run_audit
from cnnlens.methods.run import run_methods
from cnnlens.models import LoadedModel
from tests.conftest import EGYPTIAN_CAT, pearson
from tests.pinned import pinned_app, pinned_settings

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

# Small settings of the costly methods: the comparison, not the method's quality, is tested.
MAP_METHODS: dict[str, dict[str, Any]] = {
    "saliency": {},
    "guided_backprop": {},
    "deconvnet": {},
    "cam": {},
    "grad_cam": {},
    "guided_grad_cam": {},
    "grad_cam_pp": {},
    "score_cam": {},
    "integrated_gradients": {"steps": 8},
    "smoothgrad": {"samples": 4},  # noise is drawn on the CPU from a seeded generator
    "occlusion": {"window": 32, "stride": 32, "engine": "dense"},
    # Captum- and pytorch-grad-cam-like methods whose draws, if any, do not follow the device.
    "deeplift": {},
    "deeplift_shap": {},
    "input_x_gradient": {},
    "feature_ablation": {"superpixels": "grid", "segments": 16},
    "lime": {"n_samples": 16},  # LIME draws its subsets on the CPU
    "hirescam": {},
    "xgrad_cam": {},
    "layer_cam": {},
    "eigen_cam": {},
    "ablation_cam": {"channels": 16},
}


@pytest.fixture(scope="module")
def exact_cuda() -> Iterator[None]:
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.fixture(scope="module")
def cuda_model(default_model: LoadedModel) -> LoadedModel:
    return copy.deepcopy(default_model).to(torch.device("cuda"))


def _close(actual: torch.Tensor, expected: torch.Tensor, tolerance: float = 1e-3) -> None:
    assert actual.shape == expected.shape
    scale = float(expected.abs().max())
    difference = float((actual.cpu() - expected.cpu()).abs().max())
    assert difference <= tolerance * max(scale, 1e-12), (difference, scale)
    assert pearson(actual, expected) >= 0.9999


@pytest.mark.parametrize("method", sorted(MAP_METHODS))
def test_each_map_method_gives_the_cpu_map_and_stays_on_the_device(
    method: str,
    exact_cuda: None,
    default_model: LoadedModel,
    cuda_model: LoadedModel,
    chelsea_batch: torch.Tensor,
) -> None:
    spec = [(method, MAP_METHODS[method])]
    on_cpu = run_methods(default_model, chelsea_batch, spec, target=EGYPTIAN_CAT)
    on_gpu = run_methods(cuda_model, chelsea_batch.cuda(), spec, target=EGYPTIAN_CAT)
    gpu_map = on_gpu.outputs[method].map
    assert gpu_map.device.type == "cuda" and on_gpu.logits.device.type == "cuda"
    _close(gpu_map, on_cpu.outputs[method].map)


def test_incremental_occlusion_on_cuda_equals_dense(
    exact_cuda: None, cuda_model: LoadedModel, chelsea_batch: torch.Tensor
) -> None:
    x = chelsea_batch.cuda()
    params = {"window": 16, "stride": 16, "batch_size": 32}
    maps = {
        engine: run_methods(
            cuda_model, x, [("occlusion", {**params, "engine": engine})], target=EGYPTIAN_CAT
        )
        .outputs["occlusion"]
        .map
        for engine in ("dense", "incremental")
    }
    _close(maps["incremental"], maps["dense"], tolerance=1e-4)


def test_batched_maps_equal_one_image_at_a_time(
    exact_cuda: None,
    cuda_model: LoadedModel,
    chelsea_batch: torch.Tensor,
    coffee_batch: torch.Tensor,
) -> None:
    both = torch.cat([chelsea_batch, coffee_batch]).cuda()
    spec = [("grad_cam", {}), ("saliency", {})]
    together = run_methods(cuda_model, both, spec)
    for row in range(2):
        alone = run_methods(cuda_model, both[row : row + 1], spec)
        for name in ("grad_cam", "saliency"):
            _close(together.outputs[name].map[row : row + 1], alone.outputs[name].map)


def test_bf16_autocast_keeps_the_map(cuda_model: LoadedModel, chelsea_batch: torch.Tensor) -> None:
    x = chelsea_batch.cuda()
    spec = [("occlusion", {"window": 32, "stride": 16})]
    fp32 = run_methods(cuda_model, x, spec, target=EGYPTIAN_CAT).outputs["occlusion"].map
    with torch.autocast("cuda", dtype=torch.bfloat16):
        bf16 = run_methods(cuda_model, x, spec, target=EGYPTIAN_CAT).outputs["occlusion"].map
    assert pearson(bf16.float(), fp32) >= 0.95  # bf16 keeps about 3 significant digits


def test_cuda_memory_comes_back_after_many_calls(
    cuda_model: LoadedModel, chelsea_batch: torch.Tensor
) -> None:
    x = chelsea_batch.cuda()
    spec = [("grad_cam", {}), ("guided_backprop", {}), ("integrated_gradients", {"steps": 8})]
    run_methods(cuda_model, x, spec)  # allocator and cuDNN warm-up
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    for _ in range(20):
        run_methods(cuda_model, x, spec)
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() <= before
    assert not any(module._forward_hooks for module in cuda_model.module.modules())


def test_the_service_loads_its_model_on_the_gpu_and_explains_there(
    chelsea: Image.Image, exact_cuda: None
) -> None:
    upload = io.BytesIO()
    chelsea.save(upload, "PNG")
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    app = pinned_app(pinned_settings({"device": "cuda"}))  # loads efficientnet_lite0 itself
    with TestClient(app, raise_server_exceptions=False) as client:
        assert app.state.service.wait_ready(300), app.state.service.load_error
        torch.cuda.synchronize()
        weights_on_gpu = torch.cuda.memory_allocated() - before
        response = client.post(
            "/v1/explain",
            data={"method": "grad_cam", "target": str(EGYPTIAN_CAT)},
            files={"image": ("chelsea.png", upload.getvalue(), "image/png")},
        )
    assert weights_on_gpu >= 15 * 2**20  # efficientnet_lite0's 4.7 M fp32 parameters
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0]["index"] == EGYPTIAN_CAT


def test_an_audit_runs_on_the_gpu(
    cuda_model: LoadedModel, chelsea: Image.Image, tmp_path: Path
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for index in range(6):
        chelsea.save(photos / f"cat{index}.png")
    out = tmp_path / "audit"
    run = run_audit(photos, out, AuditConfig(batch_size=4), model=cuda_model)
    assert run.job.status == "done" and run.processed == 6
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert all(r["status"] == "ok" and r["predicted"] == EGYPTIAN_CAT for r in records)
