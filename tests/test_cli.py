"""The command line end to end: outputs written, and every bad input a one-line error with exit 2."""
from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from vexplain.core.colour_scale import COLOUR_BAR_HEIGHT
from vexplain.cli.main import main
from vexplain.demo.model import build

FACTORY = "vexplain.demo.model:build"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A random-weight demo-shaped model as state_dict, TorchScript and ONNX, plus images."""
    folder = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    model = build().eval()
    weights = folder / "weights.pt"
    torch.save(model.state_dict(), weights)
    scripted = folder / "scripted.pt"
    torch.jit.trace(model, torch.zeros(1, 3, 32, 32)).save(str(scripted))
    onnx_path = folder / "model.onnx"
    torch.onnx.export(model, (torch.zeros(1, 3, 32, 32),), str(onnx_path), dynamo=False, input_names=["input"], output_names=["scores"], dynamic_axes={"input": {0: "b"}, "scores": {0: "b"}})
    gray = folder / "gray.onnx"
    gray_model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))
    torch.onnx.export(gray_model, (torch.zeros(1, 1, 32, 32),), str(gray), dynamo=False, input_names=["input"], output_names=["scores"], dynamic_axes={"input": {0: "b"}, "scores": {0: "b"}})
    pickled = folder / "full_model.pt"
    torch.save(model, pickled)
    rng = np.random.default_rng(0)
    image = folder / "scene.png"
    cv2.imwrite(str(image), rng.integers(0, 255, (40, 48, 3), dtype=np.uint8))
    second = folder / "other.jpg"
    cv2.imwrite(str(second), rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    corrupt = folder / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png")
    text = folder / "notes.onnx"
    text.write_text("this is not an onnx model")
    pickle_file = folder / "evil.pkl"
    pickle_file.write_bytes(pickle.dumps({"a": object}))
    return {
        "weights": weights, "scripted": scripted, "onnx": onnx_path, "pickled": pickled, "image": image,
        "second": second, "corrupt": corrupt, "text": text, "pickle": pickle_file, "folder": folder, "gray": gray,
    }


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("method", ["saliency", "occlusion", "cam", "gradcam"])
def test_explain_writes_overlay_and_raw_map(capsys, files, tmp_path, method):
    code, out, err = run_cli(capsys, "explain", FACTORY, files["image"], files["second"], "--weights", files["weights"], "--method", method, "--size", 32, 32, "--at", "model", "--out", tmp_path)
    assert code == 0, err
    for stem in ("scene", "other"):
        raw = np.load(tmp_path / f"{stem}.{method}.npy", allow_pickle=False)
        assert raw.shape == (32, 32) and raw.dtype == np.float32 and np.isfinite(raw).all()
        picture = cv2.imread(str(tmp_path / f"{stem}.{method}.png"))
        assert picture.shape == (32 + COLOUR_BAR_HEIGHT, 32, 3)  # the overlay, then its colour bar
    assert "scene.png" in out and "other.jpg" in out


def test_explain_onnx_file_matches_torch_factory(capsys, files, tmp_path):
    args = ("explain", files["image"], "--method", "cam", "--size", 32, 32)
    assert run_cli(capsys, "explain", FACTORY, *args[1:], "--weights", files["weights"], "--out", tmp_path / "t")[0] == 0
    assert run_cli(capsys, "explain", files["onnx"], *args[1:], "--out", tmp_path / "o")[0] == 0
    torch_map = np.load(tmp_path / "t" / "scene.cam.npy")
    onnx_map = np.load(tmp_path / "o" / "scene.cam.npy")
    np.testing.assert_allclose(torch_map, onnx_map, atol=1e-4)


def test_explain_options_target_and_layer(capsys, files, tmp_path):
    code, out, err = run_cli(
        capsys, "explain", files["scripted"], files["image"], "--method", "occlusion", "--size", 32, 32,
        "--option", "window=8", "--option", "stride=(4, 4)", "--target", "2", "--out", tmp_path,
    )
    assert code == 0, err
    assert "class 2" in out
    code, out, err = run_cli(capsys, "explain", FACTORY, files["image"], "--weights", files["weights"], "--method", "gradcam", "--layer", "features.5", "--size", 32, 32, "--out", tmp_path)
    assert code == 0, err


def test_methods_and_layers(capsys, files):
    code, out, _ = run_cli(capsys, "methods")
    assert code == 0
    from vexplain import methods

    for info in methods():
        assert info.name in out
    code, out, _ = run_cli(capsys, "layers", FACTORY, "--weights", files["weights"], "--size", 32, 32)
    assert code == 0 and "* features " in out and "features.0" in out  # names then shapes
    code, out, _ = run_cli(capsys, "layers", files["onnx"], "--size", 32, 32)
    assert code == 0 and "*" in out


BAD_INPUTS = {
    "missing image": (["explain", "{onnx}", "{folder}/nope.png"], "image not found"),
    "corrupt image": (["explain", "{onnx}", "{corrupt}"], "cannot decode"),
    "directory among images": (["explain", "{onnx}", "{image}", "{folder}"], "is not a file"),
    "non-onnx file": (["explain", "{text}", "{image}"], "not a valid ONNX model"),
    "missing model": (["explain", "{folder}/missing.onnx", "{image}"], "model file not found"),
    "pickled full model": (["explain", "{pickled}", "{image}"], "refusing to unpickle"),
    "pickle as weights": (["explain", FACTORY, "{image}", "--weights", "{pickle}"], "refusing to unpickle"),
    "state dict as model": (["explain", "{weights}", "{image}"], "state_dict"),
    "bad factory": (["explain", "vexplain.nothing_here:build", "{image}", "--random-weights"], "cannot import"),
    "factory without weights": (["explain", FACTORY, "{image}"], "pass --weights state_dict.pt, or --random-weights"),
    "weights and random weights": (["explain", FACTORY, "{image}", "--weights", "{weights}", "--random-weights"], "not both"),
    "random weights on a file": (["explain", "{onnx}", "{image}", "--random-weights"], "pkg.module:factory MODEL only"),
    "unknown method": (["explain", "{onnx}", "{image}", "--method", "gradcm", "--size", "32", "32"], "did you mean: gradcam"),
    "unsupported on onnx": (["explain", "{onnx}", "{image}", "--method", "saliency", "--size", "32", "32"], "does not support 'gradients' (method 'saliency' requires it)"),
    "unknown layer": (["explain", FACTORY, "{image}", "--weights", "{weights}", "--layer", "feature.5", "--method", "cam", "--size", "32", "32"], "did you mean"),
    "target out of range": (["explain", "{onnx}", "{image}", "--target", "99", "--method", "cam", "--size", "32", "32"], "out of range"),
    "target not a class": (["explain", "{onnx}", "{image}", "--target", "giraffe", "--method", "cam", "--size", "32", "32"], "class index or a class name"),
    "option wrong type": (["explain", "{onnx}", "{image}", "--method", "occlusion", "--option", "window=big", "--size", "32", "32"], "option 'window'"),
    "option without value": (["explain", "{onnx}", "{image}", "--method", "occlusion", "--option", "window", "--size", "32", "32"], "KEY=VALUE"),
    "unknown option": (["explain", "{onnx}", "{image}", "--method", "occlusion", "--option", "windw=3", "--size", "32", "32"], "did you mean: window"),
    "bad size": (["explain", "{onnx}", "{image}", "--method", "cam", "--size", "0", "32"], "size must be"),
    "zero std": (["explain", "{onnx}", "{image}", "--method", "cam", "--std", "0", "1", "1"], "std > 0"),
    "wrong channel count": (["explain", "{gray}", "{image}", "--method", "occlusion", "--size", "32", "32"], "model takes 1"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_and_exit_2(capsys, files, case):
    argv, expected = BAD_INPUTS[case]
    argv = [a.format(**files) for a in argv]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2, (out, err)
    assert expected in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


def test_console_script_errors_without_traceback(files):
    result = subprocess.run(
        [sys.executable, "-m", "vexplain.cli.main", "explain", str(files["text"]), str(files["image"])],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "not a valid ONNX model" in result.stderr


def test_help_everywhere(capsys):
    for command in ([], ["explain"], ["methods"], ["layers"], ["demo"]):
        with pytest.raises(SystemExit) as exit_info:
            main([*command, "--help"])
        assert exit_info.value.code == 0
        assert "usage: vexplain" in capsys.readouterr().out
