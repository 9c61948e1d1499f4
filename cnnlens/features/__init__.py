"""The dataset view: feature vectors taken in an audit's own forward, a 2-D map, a
nearest-neighbour index, and the findings built on them (near-duplicates, outliers, label
issues, clusters, channel exemplars).

    import cnnlens
    vectors = cnnlens.features(model, ["a.jpg", "b.jpg"])   # (2, D) float32

Torch-free until a name is used: the audit store reads the feature tables without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cnnlens._lazy import lazy_exports

if TYPE_CHECKING:
    from cnnlens.features.config import FeatureConfig
    from cnnlens.features.vectors import FeatureLayer, feature_layer, features

__getattr__ = lazy_exports(
    __name__,
    {
        "FeatureConfig": "cnnlens.features.config",
        "FeatureLayer": "cnnlens.features.vectors",
        "feature_layer": "cnnlens.features.vectors",
        "features": "cnnlens.features.vectors",
    },
)

__all__ = ["FeatureConfig", "FeatureLayer", "feature_layer", "features"]
