"""The service counts an audit batch's feature work in its budget."""

from __future__ import annotations

import pytest

from cnnlens.errors import OverBudgetError
from cnnlens.methods.cost import Budget, Calibration
from cnnlens.methods.run import RunPlan, plan_run
from cnnlens.models.loaded import LoadedModel
from cnnlens.service.runtime.budget import FEATURES_FORWARD_SHARE, audit_plan
from cnnlens.service.settings import Limits
from tests.audit.tiny_model import tiny_loaded


def _budget(forward_equivalents: float) -> Budget:
    calibration = Calibration(
        input_shape=(3, 32, 32), forward_s=0.01, backward_s=0.02,
        saved_bytes_per_row=2_000_000, inference_bytes_per_row=1_000_000,
    )  # fmt: skip
    return Budget(forward_equivalents, 10**12, calibration)


def _grad_cam(model: LoadedModel) -> RunPlan:
    return plan_run(model, [("grad_cam", None)])


def test_the_feature_space_adds_its_share_per_image() -> None:
    model, budget = tiny_loaded(), _budget(10_000)
    without = audit_plan(_grad_cam(model), 8).admit(model, budget, Limits())
    with_features = audit_plan(_grad_cam(model), 8, features=True).admit(model, budget, Limits())
    assert with_features.forward_equivalents == pytest.approx(
        without.forward_equivalents + 8 * FEATURES_FORWARD_SHARE
    )
    assert with_features.peak_bytes == without.peak_bytes


def test_a_batch_that_fits_only_without_the_feature_space_is_refused_with_a_size_that_fits() -> (
    None
):
    model = tiny_loaded()
    maps = audit_plan(_grad_cam(model), 64).admit(model, _budget(10_000), Limits())
    budget = _budget(maps.forward_equivalents + 1)  # the maps fit, the features do not
    with pytest.raises(OverBudgetError) as refused:
        audit_plan(_grad_cam(model), 64, features=True).admit(model, budget, Limits())
    fitting = refused.value.limit
    assert refused.value.param == "batch_size" and fitting is not None and fitting < 64
    assert f"lower batch_size to at most {fitting}" in refused.value.message
    audit_plan(_grad_cam(model), fitting, features=True).admit(model, budget, Limits())
    with pytest.raises(OverBudgetError):
        audit_plan(_grad_cam(model), fitting + 1, features=True).admit(model, budget, Limits())
