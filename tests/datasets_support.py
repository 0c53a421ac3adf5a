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


def dying_build():
    """The demo CNN whose third forward call in a process SIGKILLs that process, once per test:
    only while ``VEXPLAIN_TEST_DIE_MARKER`` names a file that does not exist yet (created
    atomically by the process that dies). Set the variable in Ray workers only."""
    import signal

    from vexplain.demo.model import DemoCNN

    class Dying(DemoCNN):
        calls = 0

        def forward(self, x):
            marker = os.environ.get("VEXPLAIN_TEST_DIE_MARKER")
            Dying.calls += 1
            if marker and Dying.calls == 3:
                try:
                    os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                except FileExistsError:
                    return super().forward(x)
                os.kill(os.getpid(), signal.SIGKILL)
            return super().forward(x)

    return Dying()


def sorted_rows(table) -> list[dict]:
    """A Parquet table's rows sorted by (image, method)."""
    return sorted(table.to_pylist(), key=lambda row: (row["image"], row["method"]))


def write_scene_manifest(folder: Path, count: int, seed: int = 0, size: int = 64) -> Path:
    """``count`` demo scenes of ``size`` px as PNGs under ``folder`` and ``folder/set.csv``, a
    manifest with each scene's ``label`` and object ``box`` (pixels of the PNG)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["path,label,box"]
    for number in range(count):
        scene = generate_scene(rng, size=size)
        name = f"scene{number:04d}.png"
        cv2.imwrite(str(folder / name), cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR))
        lines.append(f"{name},{scene.label},{' '.join(map(str, scene.box))}")
    manifest = folder / "set.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest
