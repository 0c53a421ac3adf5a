"""Helpers shared by the file-hardening test modules: the CLI run, its one-line error, and a tiny
ONNX model with one image."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from vexplain.cli.main import main


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err and "internal error" not in err, err
    return lines[0]



def small_files(folder: Path) -> dict[str, Path]:
    """A tiny 3-class-of-5 ONNX CNN (16×16 input) and one image, written into ``folder``."""
    from models import onnx_bytes, seeded_cnn

    model = folder / "net.onnx"
    model.write_bytes(onnx_bytes(seeded_cnn(seed=2), (3, 16, 16)))
    image = folder / "img.png"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 255, (20, 24, 3), dtype=np.uint8))
    return {"model": model, "image": image, "folder": folder}
