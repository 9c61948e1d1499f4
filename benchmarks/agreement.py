"""How far each new method's map is from its reference library's, on the tests' seeded models.

The largest absolute difference between cnnlens's map and the library's own call (Captum,
Zennit, pytorch-grad-cam), and that difference over the reference map's largest magnitude.
The models, photos and library calls are the ones the tests in `tests/methods` assert on
(seeded torchvision VGG and ResNet, weights none, chelsea() and coffee() at 64 px).

    python -m benchmarks.agreement > benchmarks/results/families/agreement.md
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import captum.attr as captum
import numpy as np
import torch
from pytorch_grad_cam import AblationCAM, EigenCAM
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection_with_sign_correction
from zennit.torchvision import ResNetCanonizer, VGGCanonizer

from cnnlens.methods import attribute, run_methods
from tests.methods.families import TARGETS, black, photos, seeded, white
from tests.methods.test_cam_variants import LAYERS, REFERENCES, reference_cam
from tests.methods.test_captum_methods import _mask, _seeded_call
from tests.methods.test_lrp import zennit_lrp

Case = tuple[str, str, Callable[[], tuple[Any, Any]]]


def _captum_cases(name: str, model: torch.nn.Module, x: torch.Tensor) -> Iterator[Case]:
    def pair(method: str, theirs: Callable[[], torch.Tensor], **params: Any) -> Case:
        return (
            method,
            f"Captum ({name})",
            lambda: (attribute(method, model, x, target=TARGETS, **params), theirs()),
        )

    yield pair(
        "input_x_gradient", lambda: captum.InputXGradient(model).attribute(x, target=TARGETS)
    )
    references = torch.cat([black(x)[:1], white(x)[:1]])
    yield pair(
        "gradient_shap",
        lambda: _seeded_call(5, lambda: captum.GradientShap(model).attribute(
            x, baselines=references, target=TARGETS, n_samples=4, stdevs=0.1
        )),
        seed=5, n_samples=4, stdevs=0.1,
    )  # fmt: skip
    mask = _mask(model, x, segments=12)
    for method, kind, sampled in (
        ("lime", captum.Lime, True),
        ("kernel_shap", captum.KernelShap, True),
        ("feature_ablation", captum.FeatureAblation, False),
    ):
        sampling = {"n_samples": 24} if sampled else {}

        def theirs(kind: Any = kind, sampling: dict[str, int] = sampling) -> torch.Tensor:
            maps = [
                kind(model).attribute(
                    x[b : b + 1], baselines=black(x)[b : b + 1], target=TARGETS[b],
                    feature_mask=mask[b : b + 1], perturbations_per_eval=8, **sampling,
                )
                for b in range(2)
            ]  # fmt: skip
            return torch.cat(maps)[:, :1]

        seed = {"seed": 3} if sampled else {}
        reference = (lambda t=theirs: _seeded_call(3, t)) if sampled else theirs
        yield pair(method, reference, segments=12, batch_size=8, **sampling, **seed)


def cases() -> Iterator[Case]:
    vgg = seeded("vgg11")
    last = vgg.get_submodule("classifier.6")
    assert isinstance(last, torch.nn.Linear)
    with torch.no_grad():  # as the tests: random VGG logits barely move otherwise
        last.weight.mul_(100)
    resnet = seeded("resnet18")
    x = photos()
    yield (
        "deeplift",
        "Captum (vgg11)",
        lambda: (
            attribute("deeplift", vgg, x, target=TARGETS),
            captum.DeepLift(vgg).attribute(x, baselines=black(x), target=TARGETS),
        ),
    )
    references = torch.cat([black(x)[:1], white(x)[:1]])
    yield (
        "deeplift_shap",
        "Captum (vgg11)",
        lambda: (
            attribute("deeplift_shap", vgg, x, target=TARGETS),
            captum.DeepLiftShap(vgg).attribute(x, baselines=references, target=TARGETS),
        ),
    )
    yield from _captum_cases("vgg11", vgg, x)
    yield from _captum_cases("resnet18", resnet, x)
    for name, canonizer in (("resnet18", ResNetCanonizer), ("vgg11_bn", VGGCanonizer)):
        model = resnet if name == "resnet18" else seeded(name)
        for composite in ("epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1_flat"):
            yield f"lrp {composite}", f"Zennit ({name})", _lrp_pair(model, canonizer, composite, x)
    for name, model in (("vgg11", seeded("vgg11")), ("resnet18", resnet)):
        for method in ("hirescam", "xgrad_cam", "layer_cam"):
            where = f"pytorch-grad-cam ({name}, {LAYERS[name]})"
            yield method, where, _cam_pair(model, method, LAYERS[name], x)
        yield "eigen_cam", where + ", sign-corrected projection", _eigen_pair(model, name, x)
    small = x[:, :, :32, :32]
    yield (
        "ablation_cam",
        "pytorch-grad-cam (resnet18, layer3, all channels)",
        lambda: (
            _low(resnet, "ablation_cam", "layer3", small, channels="all", batch_size=64),
            reference_cam(AblationCAM, resnet, "layer3", small, TARGETS)[0],
        ),
    )


def _lrp_pair(
    model: torch.nn.Module, canonizer: Any, composite: str, x: torch.Tensor
) -> Callable[[], tuple[Any, Any]]:
    return lambda: (
        attribute("lrp", model, x, target=TARGETS, composite=composite),
        zennit_lrp(model, canonizer, composite, x),
    )


def _cam_pair(
    model: torch.nn.Module, method: str, layer: str, x: torch.Tensor
) -> Callable[[], tuple[Any, Any]]:
    return lambda: (
        _low(model, method, layer, x),
        reference_cam(REFERENCES[method], model, layer, x, TARGETS)[0],
    )


def _eigen_pair(model: torch.nn.Module, name: str, x: torch.Tensor) -> Callable[[], Any]:
    """EigenCAM's projection with pytorch-grad-cam's sign correction (see the tests)."""

    def pair() -> tuple[Any, Any]:
        _, activations = reference_cam(EigenCAM, model, LAYERS[name], x, TARGETS)
        expected = np.maximum(get_2d_projection_with_sign_correction(activations), 0)
        return _low(model, "eigen_cam", LAYERS[name], x), expected

    return pair


def _low(model: torch.nn.Module, name: str, layer: str, x: torch.Tensor, **params: Any) -> Any:
    run = run_methods(model, x, [(name, params)], target=TARGETS, layer=layer)
    return run.outputs[name].extras["low_resolution"][:, 0].numpy()


def main() -> None:
    print("| method | reference | max abs difference | / max abs of the reference |")
    print("|---|---|---|---|")
    for method, reference, compute in cases():
        ours, theirs = (np.asarray(torch.as_tensor(v).detach(), np.float64) for v in compute())
        difference = float(np.abs(ours - theirs).max())
        scale = float(np.abs(theirs).max())
        print(f"| `{method}` | {reference} | {difference:.2e} | {difference / scale:.2e} |")


if __name__ == "__main__":
    main()
