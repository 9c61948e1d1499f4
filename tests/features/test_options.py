"""The feature-space options on the CLI, in the config, and as the service's form fields."""

from __future__ import annotations

from cnnlens.cli import build_parser
from cnnlens.cli.commands.audit import _config
from cnnlens.features.config import FeatureConfig, form_options


def test_cli_flags_make_the_feature_config() -> None:
    args = build_parser().parse_args(
        ["audit", "photos", "--no-features", "--feature-layer", "blocks.5", "--map", "pca",
         "--exemplars", "blocks.2", "--exemplars", "blocks.3,blocks.2", "--exemplars-k", "4",
         "--index-exact-max", "1000"]
    )  # fmt: skip
    assert _config(args).features == FeatureConfig(
        enabled=False, layer="blocks.5", map="pca", exemplars=("blocks.2", "blocks.3"),
        exemplars_k=4, index_exact_max=1000,
    )  # fmt: skip
    default = _config(build_parser().parse_args(["audit", "photos"]))
    assert default.features == FeatureConfig()


def test_form_options_are_the_audit_routes_fields() -> None:
    from cnnlens.service.app import create_app
    from cnnlens.service.settings import Settings

    config = FeatureConfig(layer="blocks.5", map="tsne", exemplars=("blocks.2",), exemplars_k=3)
    fields = form_options(config)
    assert fields == {
        "features": True, "feature_layer": "blocks.5", "map": "tsne",
        "exemplars": ["blocks.2"], "exemplars_k": 3, "index_exact_max": 200_000,
    }  # fmt: skip
    spec = create_app(Settings.model_validate({})).openapi()  # no lifespan: nothing loads
    body = spec["paths"]["/v1/audits"]["post"]["requestBody"]["content"]["multipart/form-data"]
    reference = body["schema"]["$ref"].rpartition("/")[2]
    accepted = spec["components"]["schemas"][reference]["properties"]
    assert set(fields) <= set(accepted)
