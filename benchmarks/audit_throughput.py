"""Figure 9: `run_audit` of 64 photos with grad_cam + saliency, against the script a team
writes today (batches of 32 through captum's LayerGradCam and Saliency, the same
preprocessing, overlays saved as PNG), in this process.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cnnlens import render
from cnnlens.methods.passes import rows_per_pass
from cnnlens.methods.run import run_methods
from cnnlens.models import LoadedModel

METHODS = ("grad_cam", "saliency")


def photo_crops(count: int) -> list[np.ndarray]:
    """`count` (H, W, 3) uint8 crops of scikit-image's photos: seeded, half of them flipped."""
    from skimage import data

    photos = [data.chelsea(), data.coffee(), data.astronaut(), data.rocket()]
    generator = np.random.default_rng(0)
    crops = []
    for index in range(count):
        photo = photos[index % len(photos)]
        height, width = photo.shape[:2]
        side = int(generator.integers(min(height, width) // 2, min(height, width)))
        top = int(generator.integers(0, height - side + 1))
        left = int(generator.integers(0, width - side + 1))
        crop = photo[top : top + side, left : left + side]
        crops.append(np.ascontiguousarray(crop[:, ::-1] if index % 2 else crop))
    return crops


def write_photos(folder: Path, count: int) -> list[Path]:
    """`photo_crops(count)` saved as JPEGs (quality 90) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, crop in enumerate(photo_crops(count)):
        path = folder / f"photo_{index:03d}.jpg"
        Image.fromarray(crop).save(path, quality=90)
        paths.append(path)
    return paths


def captum_script(loaded: LoadedModel, paths: list[Path], out: Path, batch: int = 32) -> None:
    """The baseline: what a team's own loop over captum looks like."""
    from captum.attr import LayerGradCam, Saliency

    out.mkdir(parents=True, exist_ok=True)
    module = loaded.module
    grad_cam = LayerGradCam(module, module.get_submodule(loaded.default_layer))
    saliency = Saliency(module)
    for start in range(0, len(paths), batch):
        chunk = paths[start : start + batch]
        pictures = [Image.open(path).convert("RGB") for path in chunk]
        x = torch.cat([loaded.preprocessing(picture) for picture in pictures])
        with torch.no_grad():
            targets = module(x).argmax(dim=1)
        cams = grad_cam.attribute(x, target=targets, relu_attributions=True)
        grads = saliency.attribute(x, target=targets, abs=True).amax(dim=1)
        for path, picture, cam, grad in zip(chunk, pictures, cams, grads, strict=True):
            for name, raw in (("grad_cam", cam[0]), ("saliency", grad)):
                image = render.overlay(picture, raw)
                image.save(out / f"{path.stem}_{name}.png", compress_level=1)


def audit(loaded: LoadedModel, folder: Path, out: Path, batch: int = 32) -> None:
    from cnnlens.audit import AuditConfig, run_audit

    config = AuditConfig(methods=METHODS, batch_size=batch)
    run_audit(folder, out, config, model=loaded, resume=False)


def agreement(loaded: LoadedModel, paths: list[Path]) -> list[float]:
    """Pearson r of cnnlens's grad_cam and saliency with captum's, image by image."""
    from captum.attr import LayerGradCam, Saliency

    module = loaded.module
    grad_cam = LayerGradCam(module, module.get_submodule(loaded.default_layer))
    saliency = Saliency(module)
    values = []
    for path in paths:
        x = loaded.preprocessing(Image.open(path).convert("RGB"))
        result = run_methods(loaded, x, [(name, {}) for name in METHODS])
        target = result.targets
        cam = grad_cam.attribute(x, target=target, relu_attributions=True)
        cam = torch.nn.functional.interpolate(cam, size=x.shape[-2:], mode="bilinear")
        grad = saliency.attribute(x, target=target, abs=True).amax(dim=1)
        for ours, theirs in ((result.outputs["grad_cam"].map, cam),
                             (result.outputs["saliency"].map, grad)):  # fmt: skip
            pair = torch.stack([ours.double().flatten(), theirs.double().flatten()])
            values.append(float(torch.corrcoef(pair)[0, 1]))
    return values


def measure(loaded: LoadedModel, count: int, repeats: int) -> dict[str, float | list[float]]:
    """Median seconds of each (run in turn; the captum script also at the audit's pass size),
    and the map agreement on 3 images."""
    work = Path(tempfile.mkdtemp(prefix="cnnlens-audit-bench-"))
    paths = write_photos(work / "photos", count)
    ours: list[float] = []
    theirs: list[float] = []
    theirs_small: list[float] = []
    small_batch = rows_per_pass(loaded.layers, "cpu") or 32  # the audit's pass on a CPU
    # Once per process, not per audit: numba compiles UMAP's kernels on the first map (the
    # feature space is on by default), and the script's first call warms torch the same way.
    audit(loaded, work / "photos", work / "audit-warm")
    captum_script(loaded, paths[:1], work / "captum-warm")
    for index in range(repeats):
        started = time.perf_counter()
        audit(loaded, work / "photos", work / f"audit{index}")
        ours.append(time.perf_counter() - started)
        started = time.perf_counter()
        captum_script(loaded, paths, work / f"captum{index}")
        theirs.append(time.perf_counter() - started)
        # For reference: the same script with the pass size the audit picks on a CPU.
        started = time.perf_counter()
        captum_script(loaded, paths, work / f"captum-small{index}", batch=small_batch)
        theirs_small.append(time.perf_counter() - started)
    return {
        "audit_s": float(np.median(ours)),
        "captum_s": float(np.median(theirs)),
        "captum_small_batch_s": float(np.median(theirs_small)),
        "small_batch": small_batch,
        "r": agreement(loaded, paths[:3]),
    }
