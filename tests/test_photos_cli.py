"""`vexplain explain` on a non-square photo: preprocessing from the model's metadata, a stated
crop, maps at the photo's resolution (`--at original`, the default) or the model's (`--at model`)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from vexplain.cli.main import main
from vexplain.core.colour_scale import COLOUR_BAR_HEIGHT
from vexplain.demo.model import ASSETS


@pytest.fixture(scope="module")
def photo_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photos") / "photo.png"
    image = np.random.default_rng(3).integers(0, 256, (300, 451, 3), dtype=np.uint8)
    cv2.imwrite(str(path), image)
    return path


def run_cli(capsys, *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_default_writes_at_the_photo_resolution_and_states_the_crop(capsys, photo_file, tmp_path):
    code, out, err = run_cli(capsys, "explain", ASSETS / "demo_cnn.onnx", photo_file, "-m", "occlusion", "-o", tmp_path)
    assert code == 0, err
    raw = np.load(tmp_path / "photo.occlusion.npy")
    assert raw.shape == (300, 451)
    finite_columns = np.flatnonzero(np.isfinite(raw).all(axis=0))
    assert (finite_columns[0], finite_columns[-1], len(finite_columns)) == (75, 375, 301)
    png = cv2.imread(str(tmp_path / "photo.occlusion.png"))
    assert png.shape == (300 + COLOUR_BAR_HEIGHT, 451, 3)
    (line,) = [line for line in err.splitlines() if "warning" in line]
    assert "451×300" in line and "centre-cropped to 64×64" in line and "x 75.1667–375.833" in line


def test_at_model_writes_the_model_input_size(capsys, photo_file, tmp_path):
    code, out, err = run_cli(capsys, "explain", ASSETS / "demo_cnn.onnx", photo_file, "-m", "occlusion", "--at", "model", "-o", tmp_path)
    assert code == 0, err
    assert np.load(tmp_path / "photo.occlusion.npy").shape == (64, 64)
    assert np.isfinite(np.load(tmp_path / "photo.occlusion.npy")).all()


def test_fixed_size_onnx_model_names_its_input_size(capsys, photo_file, tmp_path):
    # measured by a new user: "internal error" cut off before "Expected: 64"
    code, out, err = run_cli(capsys, "explain", ASSETS / "demo_cnn.onnx", photo_file, "--size", 300, 451, "-m", "occlusion", "-o", tmp_path)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "(batch, 3, 64, 64)" in err and "(1, 3, 300, 451)" in err
