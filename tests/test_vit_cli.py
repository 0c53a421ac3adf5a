"""``vexplain layers`` lists token layers with their grid and marks the ViT default; ``explain``
runs a CAM method on a ViT with no --layer, and a bad --option grid is one line and exit 2."""
from __future__ import annotations

import cv2
import numpy as np
import torch

from vexplain.cli.main import main

from vit_models import plain_vit

FACTORY = "vit_models:plain_vit"


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def weights(tmp_path) -> str:
    path = tmp_path / "vit.pt"
    torch.save(plain_vit().state_dict(), path)
    return str(path)


def test_layers_lists_token_grids(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "layers", FACTORY, "--weights", weights(tmp_path), "--size", 32, 32)
    assert code == 0
    lines = {line[2:].split()[0]: line for line in out.splitlines()}
    assert lines["blocks.1.norm1"].startswith("* ") and "(1, 17, 16)  tokens: grid 4x4, prefix 1" in lines["blocks.1.norm1"]
    assert "tokens: grid 4x4, prefix 1" in lines["blocks.0"]
    assert "embed" in lines and "grid" not in lines["embed"]  # the patch embedding is a plain 4-D map


def test_explain_and_a_bad_grid(capsys, tmp_path):
    image = tmp_path / "img.png"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    w = weights(tmp_path)
    code, out, err = run_cli(capsys, "explain", FACTORY, "--weights", w, str(image), "--method", "gradcam", "--out", tmp_path / "out", "--size", 32, 32)
    assert code == 0, err
    assert np.load(tmp_path / "out" / "img.gradcam.npy").shape == (32, 32)
    code, _, err = run_cli(capsys, "explain", FACTORY, "--weights", w, str(image), "--method", "gradcam", "--option", "grid=5,5", "--out", tmp_path / "out", "--size", 32, 32)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "grid" in err
