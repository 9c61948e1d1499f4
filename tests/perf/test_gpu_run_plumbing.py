"""The prepared GPU run refuses cleanly without a GPU, and its batch-scaling figure measures
what it says: the same maps batched as one image at a time, and a rate per call."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import batch_scaling, run
from benchmarks.timing import Timing
from tests.audit.tiny_model import tiny_loaded

ROOT = Path(__file__).resolve().parents[2]
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present here")


@no_cuda
def test_cuda_only_exits_3_without_a_gpu(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        run.main(["--cuda-only"])
    assert stopped.value.code == 3
    assert "no GPU" in capsys.readouterr().err


@no_cuda
def test_the_gpu_script_exits_3_without_a_gpu() -> None:
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu.sh")],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], "PY": sys.executable},
        timeout=120,
    )
    assert done.returncode == 3, done.stderr
    assert "no CUDA device" in done.stderr


def test_batch_scaling_calls_give_the_one_image_maps() -> None:
    loaded = tiny_loaded()
    torch.manual_seed(0)
    x = torch.rand(6, 3, *loaded.input_size)
    calls = batch_scaling.calls(loaded, x, (1, 3, 6))
    assert set(calls) == {"batch 1", "batch 3", "batch 6", batch_scaling.ONE_AT_A_TIME}
    assert calls["batch 3"]().outputs["grad_cam"].map.shape[0] == 3
    assert batch_scaling.map_difference(loaded, x) < 1e-5


def test_images_per_s_divides_images_by_the_call_time() -> None:
    timings = {
        "batch 1": Timing(10.0, 3, 0.0, (10.0,)),
        "batch 4": Timing(20.0, 3, 0.0, (20.0,)),
        batch_scaling.ONE_AT_A_TIME: Timing(40.0, 3, 0.0, (40.0,)),
    }
    rates = batch_scaling.images_per_s(timings, (1, 4), 4)
    assert rates == {"batch 1": 100.0, "batch 4": 200.0, batch_scaling.ONE_AT_A_TIME: 100.0}
