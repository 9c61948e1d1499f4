"""The `cnnlens` command line through cnnlens.cli.main: locally and against a server."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlens.cli import main
from cnnlens.cli.commands import COMMANDS
from tests.conftest import EGYPTIAN_CAT


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def local_run(chelsea_png: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("local")
    code = main(["explain", str(chelsea_png), "--method", "grad_cam,saliency", "--array",
                 "--out", str(out), "--quiet"])  # fmt: skip
    assert code == 0
    return out


def test_explain_locally_writes_overlays_and_summary(local_run: Path) -> None:
    summary = _summary(local_run)
    assert summary["server"] is None and summary["model"] == "efficientnet_lite0"
    assert summary["methods"] == ["grad_cam", "saliency"] and summary["failed"] == []
    (image,) = summary["images"]
    assert (image["width"], image["height"]) == (451, 300)
    assert image["predictions"][0]["index"] == EGYPTIAN_CAT
    assert image["predictions"][0]["label"] == "Egyptian cat"
    assert image["targets"] == [image["predictions"][0]]
    for entry in image["explanations"]:
        assert entry["target"]["index"] == EGYPTIAN_CAT
        with Image.open(local_run / entry["overlay"]) as overlay:
            assert overlay.format == "PNG" and overlay.size == (451, 300)
        assert np.load(local_run / entry["array"]).shape[-2:] == (300, 451)
    assert (local_run / "chelsea_grad_cam_285_overlay.png").is_file()
    assert (local_run / "chelsea_saliency_285_heatmap.png").is_file()


def test_explain_against_a_server_matches_local(
    local_run: Path, chelsea_png: Path, server_url: str, tmp_path: Path, capsys
) -> None:
    code = main(["explain", str(chelsea_png), "-m", "grad_cam", "saliency", "--array",
                 "--server", server_url, "--out", str(tmp_path)])  # fmt: skip
    assert code == 0
    assert "Egyptian cat" in capsys.readouterr().out
    remote, local = _summary(tmp_path), _summary(local_run)
    assert remote["server"] == server_url and remote["model"] == "efficientnet_lite0"
    (remote_image,), (local_image,) = remote["images"], local["images"]
    assert [p["index"] for p in remote_image["predictions"]] == [
        p["index"] for p in local_image["predictions"]
    ]
    for r, lo in zip(remote_image["explanations"], local_image["explanations"], strict=True):
        assert r["method"] == lo["method"] and r["overlay"] == lo["overlay"]
        np.testing.assert_allclose(
            np.load(tmp_path / r["array"]), np.load(local_run / lo["array"]), rtol=1e-4, atol=1e-6
        )


def test_explain_with_target_and_layer(chelsea_png: Path, server_url: str, tmp_path: Path) -> None:
    code = main(["explain", str(chelsea_png), "--target", "281", "--layer", "blocks.5",
                 "--server", server_url, "--out", str(tmp_path), "-q"])  # fmt: skip
    assert code == 0
    (entry,) = _summary(tmp_path)["images"][0]["explanations"]
    assert entry["target"]["index"] == 281 and entry["layer"] == "blocks.5"
    assert (tmp_path / "chelsea_grad_cam_281_overlay.png").is_file()


def test_unknown_method_exits_2(chelsea_png: Path, server_url: str, tmp_path: Path, capsys):
    code = main(["explain", str(chelsea_png), "--method", "no_such_method",
                 "--server", server_url, "--out", str(tmp_path), "-q"])  # fmt: skip
    assert code == 2
    assert "unknown_method" in capsys.readouterr().err


def test_missing_image_exits_2(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["explain", str(tmp_path / "missing.png"), "--out", str(tmp_path)])
    assert caught.value.code == 2
    assert "no such image file" in capsys.readouterr().err


def test_models_local_and_remote(server_url: str, capsys) -> None:
    assert main(["models", "--all", "--filter", "lite0"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert "efficientnet_lite0  (default)  weights: embedded package" in listed
    assert all("lite0" in line for line in listed) and len(listed) >= 2  # timm's too
    assert main(["models", "--server", server_url, "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["name"] == "efficientnet_lite0" and entry["default"] is True
    assert entry["num_classes"] == 1000 and entry["default_layer"] == "bn2"


def test_layers_local_table_and_remote_json(server_url: str, capsys) -> None:
    assert main(["layers", "efficientnet_lite0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    stem = next(line for line in lines if " conv_stem " in f" {line} ")
    assert "32x112x112" in stem and "3px" in stem
    assert any(line.startswith("*") and " bn2 " in f"{line} " for line in lines)
    assert "* default layer: bn2" in lines
    assert main(["layers", "efficientnet_lite0", "--server", server_url, "--json"]) == 0
    remote = json.loads(capsys.readouterr().out)
    assert remote["default_layer"] == "bn2"
    names = [layer["name"] for layer in remote["layers"]]
    stem_layer = remote["layers"][names.index("conv_stem")]
    assert stem_layer["output_shape"] == [32, 112, 112] and stem_layer["receptive_field"] == 3


def test_unknown_model_exits_2(capsys) -> None:
    assert main(["layers", "no_such_model"]) == 2
    assert "unknown_model" in capsys.readouterr().err


def test_unreachable_server_exits_1(capsys) -> None:
    assert main(["models", "--server", "http://127.0.0.1:9", "--timeout", "2"]) == 1
    assert "connection_error" in capsys.readouterr().err


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_for_every_command(command: str | None, capsys) -> None:
    argv = ["--help"] if command is None else [command.replace("_", "-"), "--help"]
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: cnnlens{'' if command is None else ' ' + command}")
    if command is None:
        assert all(name in out for name in ("serve", "explain", "models", "layers"))


def test_no_command_is_bad_usage(capsys) -> None:
    assert main([]) == 2
    assert "usage: cnnlens" in capsys.readouterr().err


def test_serve_refuses_a_missing_config_file(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["serve", "--config", str(tmp_path / "missing.toml")])
    assert caught.value.code == 2
    assert "no such file" in capsys.readouterr().err
