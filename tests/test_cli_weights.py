"""A ``pkg.module:factory`` MODEL without ``--weights`` would explain an untrained network: every
command that loads a model refuses it with the fix, unless ``--random-weights`` says so on purpose."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vexplain.cli.main import main
from vexplain.core.errors import InvalidOption
from vexplain.cli.model_loading import check_weights, is_factory

FACTORY = "vexplain.demo.model:build"
FIX = "pass --weights state_dict.pt, or --random-weights to explain the random weights on purpose"


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def image(tmp_path):
    import cv2

    path = tmp_path / "scene.png"
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    return path


@pytest.mark.parametrize(
    "argv",
    [
        ["explain", FACTORY, "{image}", "--size", "32", "32"],
        ["layers", FACTORY, "--size", "32", "32"],
        ["evaluate", "--model", FACTORY, "--data", "{folder}"],
        ["bench", "--model", FACTORY, "--methods", "saliency"],
        ["serve", FACTORY],
    ],
)
def test_every_model_loading_command_refuses_a_factory_without_weights(capsys, image, tmp_path, argv):
    argv = [a.format(image=image, folder=tmp_path) for a in argv] + ["--out", tmp_path / "out"] * (argv[0] in {"explain", "evaluate", "bench"})
    if argv[0] == "serve":
        pytest.importorskip("starlette")
        pytest.importorskip("uvicorn")
        pytest.importorskip("multipart")
    code, out, err = run_cli(capsys, *argv)
    assert code == 2, (out, err)
    assert FIX in err and FACTORY in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_random_weights_on_purpose_explains_the_factory_model(capsys, image, tmp_path):
    torch.manual_seed(0)
    code, out, err = run_cli(capsys, "explain", FACTORY, image, "--random-weights", "--method", "cam", "--size", 32, 32, "--out", tmp_path)
    assert code == 0, err
    assert np.load(tmp_path / "scene.cam.npy").shape == (32, 32)
    code, out, err = run_cli(capsys, "layers", FACTORY, "--random-weights", "--size", 32, 32)
    assert code == 0 and "*" in out, err


def test_the_weights_rule():
    assert is_factory(FACTORY) and not is_factory("model.onnx") and not is_factory("C:/models/x.onnx")
    check_weights(FACTORY, "w.pt", False)
    check_weights(FACTORY, None, True)
    check_weights("model.onnx", None, False)
    with pytest.raises(InvalidOption, match="untrained"):
        check_weights(FACTORY, None, False)
    with pytest.raises(InvalidOption, match="not both"):
        check_weights(FACTORY, "w.pt", True)
    with pytest.raises(InvalidOption, match="factory MODEL only"):
        check_weights("model.onnx", None, True)


def test_serve_random_weights_without_a_model_is_refused(capsys):
    pytest.importorskip("starlette")
    pytest.importorskip("uvicorn")
    pytest.importorskip("multipart")
    code, _, err = run_cli(capsys, "serve", "--random-weights")
    assert code == 2 and "--random-weights needs a MODEL" in err
