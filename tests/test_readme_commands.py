"""README.md runs as written.

- Every ```bash block after the first (the install commands) runs verbatim in a fresh empty folder
  and succeeds.
- Every ```python block runs verbatim, in order of appearance, each in a fresh folder holding only
  what the README's first command leaves there: ``vexplain demo``'s output folder
  ``vexplain-demo/`` (its scene PNGs with ``boxes.json`` and the model files; written here by the
  demo command's own writers, 4 scenes instead of 32 and without explaining them, to spare the
  CPU). Blocks with a known result are checked against what they say (``CHECKS``).

A block that starts a server or needs the network says so on the line above its fence:
``<!-- readme-test: skip (why) -->``; it is skipped, and the reason is required. Fences without a
language (command synopses with placeholders, sample output) and ```toml are not run.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
SKIP = re.compile(r"^skip \((?P<why>[^)]+)\)$")


def blocks(language: str) -> list[tuple[str | None, str]]:
    """(mark, body) of each ```LANGUAGE block, in order."""
    fence = re.compile(rf"(?:<!-- readme-test: (?P<mark>[^>]*?) -->\n)?```{language}\n(?P<body>.*?)```", re.S)
    return [(m.group("mark"), m.group("body")) for m in fence.finditer(README)]


BLOCKS = blocks("bash")[1:]
PYTHON_BLOCKS = blocks("python")


def test_the_readme_has_command_blocks_and_every_mark_is_understood():
    assert len(BLOCKS) >= 2 and len(PYTHON_BLOCKS) >= 5
    for mark, body in BLOCKS + PYTHON_BLOCKS:
        assert mark is None or SKIP.match(mark), f"unknown readme-test mark {mark!r} above:\n{body}"
    assert any(mark is None and "vexplain explain" in body for mark, body in BLOCKS)  # the quick start runs
    assert all(mark is None for mark, _ in PYTHON_BLOCKS), "every Python block runs"


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_a_readme_command_block_runs_verbatim_in_a_fresh_folder(index, tmp_path):
    mark, body = BLOCKS[index]
    if mark is not None:
        pytest.skip(SKIP.match(mark).group("why"))
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", body], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"README block {index + 2} failed:\n{body}\nstdout:\n{done.stdout[-2000:]}\nstderr:\n{done.stderr[-2000:]}"
    if "vexplain explain" in body:
        assert list((tmp_path / "out").glob("*.png")) and list((tmp_path / "out").glob("*.npy"))


# --- the Python blocks ---------------------------------------------------------------------------


def check_quick_start(ns: dict[str, Any], cwd: Path) -> None:
    assert ns["exp"].maps.shape == (4, 64, 64) and ns["overlays"].shape == (4, 64, 64, 3)
    assert (cwd / "out" / "scene_0.gradcam.png").is_file() and (cwd / "out" / "scene_0.gradcam.npy").is_file()
    occ = ns["occ"].options  # auto times the exact engines (core/engine_choice.py): any of them, and why
    assert occ["engine"] in ("incremental", "onnx", "torch") and occ["engine_reason"]
    assert ns["onnx_exp"].maps.shape == (4, 64, 64) and ns["onnx_exp"].options["backend"] == "onnx"


def check_callable_target(ns: dict[str, Any], cwd: Path) -> None:
    assert ns["exp"].scores.shape == (2, 1) and ns["exp"].targets.tolist() == [0, 0]


def check_vit(ns: dict[str, Any], cwd: Path) -> None:
    options = ns["exp"].options
    assert (options["layer"], list(options["grid"]), options["prefix"]) == ("vit.layers.1.layernorm_before", [4, 4], 1)


def check_notebook(ns: dict[str, Any], cwd: Path) -> None:
    assert repr(ns["exp"]).startswith("Explanation(method='gradcam', maps=(3, 64, 64) float32")
    assert (cwd / "compare.png").is_file() and len(ns["figure"].explanations) == 3


def check_evaluate(ns: dict[str, Any], cwd: Path) -> None:
    assert ns["deletion"].score.shape == (4,) and ns["deletion"].curves["deletion"].shape == (4, 101)
    assert set(np.unique(ns["hits"].values["hit"])) <= {0.0, 1.0}


def check_dataset(ns: dict[str, Any], cwd: Path) -> None:
    assert ns["run"].rows == 4 * 2 and ns["first"].shape == (64, 64) and ns["first"].dtype == np.float32


def check_dataset_evaluation(ns: dict[str, Any], cwd: Path) -> None:
    scenes = len(ns["truth"])
    for method in ("gradcam", "saliency"):
        assert ns["run"].summary[method]["deletion.auc"]["n"] == scenes
        assert 0 <= ns["run"].summary[method]["pointing_game.hit"]["mean"] <= 1
    assert (cwd / "evaluation" / "_summary.json").is_file()


def check_plugin(ns: dict[str, Any], cwd: Path) -> None:
    """Registered for this test only, the plugin explains a vertical step edge as the README says:
    Sobel d/dx of a 0 → 1 step is 1 + 2 + 1 = 4 on the two columns beside it, 0 elsewhere."""
    import types

    import torch

    import vexplain as vx
    from vexplain.core.registry import REGISTRY
    from vexplain.demo.model import load_demo_model

    plugin = types.ModuleType("vexplain_sobel")
    plugin.register_explainers = ns["register_explainers"]
    name = REGISTRY.register_plugin(plugin, "vexplain_sobel")
    try:
        images = torch.zeros(2, 3, 64, 64)
        images[:, :, :, 32:] = 1.0
        exp = vx.explain(load_demo_model(), images, method="sobel_edges", reduce="max")
    finally:
        REGISTRY.unregister_plugin(name)
    expected = np.zeros((2, 64, 64), np.float32)
    expected[:, :, 31:33] = 4.0
    np.testing.assert_allclose(exp.maps, expected, atol=1e-6)
    assert "sobel_edges" not in {m.name for m in vx.methods()}


#: a line found in exactly one Python block → what must hold after that block ran
CHECKS: dict[str, Callable[[dict[str, Any], Path], None]] = {
    'onnx_exp = vx.explain(ASSETS / "demo_cnn.onnx"': check_quick_start,
    "def road_score(output):": check_callable_target,
    "ViTForImageClassification(ViTConfig(": check_vit,
    "figure = vx.compare(": check_notebook,
    'metric="pointing_game", masks=boxes)': check_evaluate,
    "run = vx.explain_dataset(": check_dataset,
    "run = vx.evaluate_dataset(": check_dataset_evaluation,
    "class SobelEdges(vx.Explainer):": check_plugin,
}


def test_every_check_finds_exactly_one_python_block():
    for line in CHECKS:
        assert sum(line in body for _, body in PYTHON_BLOCKS) == 1, f"{line!r} should be in exactly one Python block"


@pytest.fixture
def after_install(tmp_path, monkeypatch):
    """A fresh folder with what `vexplain demo` writes (4 scenes), as the current directory."""
    from vexplain.cli.demo_command import copy_model, write_scenes
    from vexplain.demo.scenes import generate_dataset

    images, labels, boxes = generate_dataset(4, seed=2026)
    write_scenes(tmp_path / "vexplain-demo", images, boxes, labels)
    copy_model(tmp_path / "vexplain-demo")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")  # no display
    return tmp_path


@pytest.mark.parametrize("index", range(len(PYTHON_BLOCKS)))
def test_a_readme_python_block_runs_verbatim_in_a_fresh_folder(index, after_install):
    _, body = PYTHON_BLOCKS[index]
    if "from transformers import" in body:
        # transformers imports torchvision; the test extra's torchvision 0.28.0 wheel is a CUDA build
        # that cannot load beside the CPU torch (DESIGN.md, "Reference libraries"): the test-only
        # schema fix every ViT test uses. A user with only the transformers extra has no torchvision.
        from gradcam_reference import _import_torchvision

        _import_torchvision()
    namespace: dict[str, Any] = {"__name__": f"readme_block_{index + 1}"}
    exec(compile(body, f"README.md python block {index + 1}", "exec"), namespace)
    for line, check in CHECKS.items():
        if line in body:
            check(namespace, after_install)
