"""`vexplain demo` on the shipped model: figure written, CAM/Grad-CAM/occlusion point inside the box."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from vexplain.cli.main import main
from vexplain.demo.model import ASSETS, load_demo_model, load_metadata


def test_shipped_assets_agree_with_each_other():
    import numpy as np
    import torch

    import vexplain as vx
    from vexplain.demo.model import preprocess
    from vexplain.demo.scenes import generate_dataset

    meta = load_metadata()
    images, _, _ = generate_dataset(8, seed=3)
    inputs = preprocess(images)
    with torch.no_grad():
        torch_scores = load_demo_model()(torch.from_numpy(inputs)).numpy()
    onnx_adapter = vx.adapt(ASSETS / "demo_cnn.onnx")
    np.testing.assert_allclose(onnx_adapter.forward(torch.from_numpy(inputs)).numpy(), torch_scores, atol=1e-4)
    assert onnx_adapter.metadata["class_names"] == meta["class_names"]
    assert list(onnx_adapter.metadata["input_size"]) == list(meta["input_size"])


def test_demo_points_inside_the_box(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--scenes", "16"]) == 0
    out = capsys.readouterr().out
    scenes = sorted((tmp_path / "scenes").glob("*.png"))  # written as PNGs for `vexplain explain`, and said where
    assert [p.name for p in scenes] == [f"scene_{i:02d}.png" for i in range(16)] and f"scenes: 16 PNGs in {tmp_path / 'scenes'}" in out
    from vexplain.demo.scenes import generate_dataset

    first = cv2.cvtColor(cv2.imread(str(scenes[0])), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(first, generate_dataset(16, seed=2026, size=first.shape[0])[0][0])
    for name in ("demo_cnn.onnx", "demo_cnn.pt", "demo_cnn.json"):
        assert (tmp_path / name).read_bytes() == (ASSETS / name).read_bytes()
    results = json.loads((tmp_path / "demo_results.json").read_text())
    for method in ("cam", "gradcam", "occlusion"):
        entry = results["methods"][method]
        assert entry["hits"] / entry["scenes"] >= 0.9, (method, entry)
        assert method in out
    import vexplain as vx

    for info in vx.methods():  # a quick look runs with each method's quick_options, and says so
        if info.quick_options and info.name in results["methods"] and "skipped" not in results["methods"][info.name]:
            recorded = results["methods"][info.name]["options"]
            assert all(recorded[k] == v for k, v in info.quick_options.items()) and f"{info.name}: quick settings" in out
    figure = cv2.imread(str(tmp_path / "demo.png"))
    assert figure is not None and figure.shape[0] > 64 and figure.shape[1] > 64 * 4
    assert results["accuracy"] >= 0.9


def test_every_quick_option_is_a_valid_option_of_its_method():
    import vexplain as vx

    for info in vx.methods():
        if info.quick_options:
            resolved = vx.resolve_options(info.name, info.quick_options)
            assert all(resolved[k] == v for k, v in info.quick_options.items()), info.name


def test_demo_rejects_zero_scenes(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--scenes", "0"]) == 2
    assert "--scenes must be at least 1" in capsys.readouterr().err


@pytest.mark.parametrize("enabled", [True, False])
def test_progress_bars_only_when_enabled(enabled):
    from vexplain.core.progress import progress, progress_bars

    items = list(range(5))
    with progress_bars(enabled):
        wrapped = progress(items, total=5, description="x")
    assert (wrapped is items) is (not enabled)
    assert list(wrapped) == items


def test_the_demo_scenes_come_with_the_ground_truth_evaluate_reads(tmp_path):
    """`vexplain demo` writes scenes/boxes.json; `vexplain evaluate --data OUT/scenes` reads it back
    as the very boxes and labels the scenes were generated with."""
    from vexplain.cli.demo_command import write_scenes
    from vexplain.cli.evaluate_data import folder_set
    from vexplain.demo.model import demo_adapter
    from vexplain.demo.scenes import generate_dataset
    from vexplain.evaluation import as_masks

    images, labels, boxes = generate_dataset(3, seed=7)
    write_scenes(tmp_path, images, boxes, labels)
    truth = json.loads((tmp_path / "scenes" / "boxes.json").read_text())
    assert truth["scene_01.png"] == {"box": [int(v) for v in boxes[1]], "label": int(labels[1])}
    meta = load_metadata()
    data = folder_set(str(tmp_path / "scenes"), None, demo_adapter(), None, None, meta["mean"], meta["std"])
    assert data.names == ["scene_00.png", "scene_01.png", "scene_02.png"]
    np.testing.assert_array_equal(data.labels, labels)
    np.testing.assert_array_equal(data.masks, as_masks(boxes, 3, (64, 64)).numpy())
