"""LIME over superpixels (Ribeiro, Singh & Guestrin 2016), through Captum."""

from __future__ import annotations

from captum.attr import Lime as CaptumLime

from cnnlens.methods._superpixels import SampledSuperpixelParams, SuperpixelMethod
from cnnlens.methods.base import register


@register
class Lime(SuperpixelMethod):
    """g = argmin_g sum_z pi_x(z) (S(z) - g(z'))^2 + Omega(g): a sparse linear model of the
    score over superpixels switched on/off (z' in {0,1}^d), weighted by proximity to the image.

    Ribeiro et al., "Why Should I Trust You?", KDD 2016, eq. (1)-(2); captum.attr.Lime with
    its defaults (Lasso, alpha 0.01; exponential kernel on cosine distance, width 1), seeded.
    Each pixel gets its superpixel's coefficient. Shapes: x (B, 3, H, W) -> (B, 1, H, W).
    """

    name = "lime"
    title = "LIME"
    paper = "Ribeiro et al. 2016, arXiv:1602.04938"
    Params = SampledSuperpixelParams
    explainer = CaptumLime
    sampled = True
