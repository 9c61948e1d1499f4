"""Input x gradient (Shrikumar et al. 2016), through Captum."""

from __future__ import annotations

import torch
from captum.attr import InputXGradient as CaptumInputXGradient

from cnnlens.methods._captum import CaptumCall, CaptumMethod
from cnnlens.methods.base import MethodParams, register


@register
class InputXGradient(CaptumMethod):
    """A_i = x_i dS/dx_i, per colour channel (DeepLIFT with a zero baseline on a ReLU net
    without biases; Ancona et al. 2018, sec. 3).

    Shrikumar et al., "Not Just a Black Box: Learning Important Features Through Propagating
    Activation Differences", 2016; captum.attr.InputXGradient.
    Shapes: x (B, 3, H, W) -> (B, 3, H, W), signed.
    """

    name = "input_x_gradient"
    title = "Input x gradient"
    paper = "Shrikumar et al. 2016, arXiv:1605.01713"
    Params = MethodParams

    def attribute(self, call: CaptumCall, params: MethodParams) -> torch.Tensor:
        return CaptumInputXGradient(call.model).attribute(  # type: ignore[no-any-return]
            call.x, additional_forward_args=(call.rows,)
        )
