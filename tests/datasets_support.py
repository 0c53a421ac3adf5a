"""Shared helpers of the data-set tests: generated scene folders and the demo model's spec."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from vexplain.demo.model import ASSETS, WEIGHTS_FILE
from vexplain.demo.scenes import CLASS_NAMES, generate_scene

MODEL = "vexplain.demo.model:build"
WEIGHTS = str(ASSETS / WEIGHTS_FILE)


def write_scenes(folder: Path, count: int, seed: int = 0, by_class: bool = True) -> list[Path]:
    """``count`` demo scenes as PNGs under ``folder`` (in class sub-folders when ``by_class``)."""
    rng = np.random.default_rng(seed)
    paths = []
    for number in range(count):
        scene = generate_scene(rng)
        sub = folder / CLASS_NAMES[scene.label] if by_class else folder
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / f"scene{number:04d}.png"
        cv2.imwrite(str(path), cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR))
        paths.append(path)
    return paths


def quiet_ray_environment() -> None:
    """No usage statistics and no dashboard traffic from a test's local Ray."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
