"""Box and Region targets on ONNX models: every gradient-free method gives torch's maps within 1e-4
on a YOLO-style detector (v8 and v5 layouts, torch and its ONNX export) and an FCN segmenter,
through the public API and the CLI. Methods are taken from the registry, so new ones are covered."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

import vexplain as vx
from vexplain.cli.main import main
from vexplain.targets import Box, Region

from models import close, images, tiny_seg_net
from outputs_models import export, onnx_tensor_of
from target_models import tiny_yolo

#: methods that score class indices through the classifier's weights refuse target objects
NEEDS_CLASS_INDICES = {m.name for m in vx.methods() if m.class_targets_only}
GRADIENT_FREE = sorted(m.name for m in vx.methods() if "onnx" in m.backends and m.name not in NEEDS_CLASS_INDICES)
LAYERED = {m.name for m in vx.methods() if "layer" in m.options}
FAST = {"occlusion": {"window": 4, "stride": 4}, "rise": {"masks": 64}}
SEG_MASK = np.zeros((8, 8), bool)
SEG_MASK[2:6, 1:5] = True


def detector(layout: str):
    model = tiny_yolo(seed=0, layout=layout)
    return model, images(3, size=16, seed=1), Box([2.0, 2.0, 11.0, 11.0], label=None, iou=0.05), "features.3", "detections"


def segmenter():
    return tiny_seg_net(seed=0), images(3, size=8, seed=1), Region(1, SEG_MASK), "conv2", "logits"


CASES = {"yolov8": lambda: detector("yolov8"), "yolov5": lambda: detector("yolov5"), "segmenter": segmenter}




@pytest.fixture(scope="module")
def graphs():
    built = {}
    for name, case in CASES.items():
        model, x, _, layer, output = case()
        graph = vx.adapt(export(model, tuple(x.shape[1:]), [output]))
        built[name] = (graph, onnx_tensor_of(graph, model, layer, x))
    return built


@pytest.mark.parametrize("method", GRADIENT_FREE)
@pytest.mark.parametrize("case", list(CASES))
def test_target_objects_agree_between_torch_and_onnx(case, method, graphs):
    model, x, target, layer, _ = CASES[case]()
    graph, onnx_layer = graphs[case]
    torch_layer = {"layer": layer} if method in LAYERED else {}
    onnx_options = {"layer": onnx_layer} if method in LAYERED else {}
    on_torch = vx.explain(model, x, method=method, targets=target, **FAST.get(method, {}), **torch_layer)
    on_onnx = vx.explain(graph, x, method=method, targets=target, **FAST.get(method, {}), **onnx_options)
    expected = target.score(model(torch.from_numpy(x))).detach().numpy().reshape(-1)
    close(on_onnx.scores[:, 0], expected, atol=1e-5)
    close(on_onnx.maps, on_torch.maps, atol=1e-4)
    assert on_onnx.options["backend"] == "onnx" and np.isfinite(on_onnx.maps).all()


@pytest.mark.parametrize("batch_size", [1, 2, 4, 16])
def test_one_box_per_input_on_onnx_is_batch_invariant(batch_size, graphs):
    model, _, _, _, _ = detector("yolov8")
    x = images(16, size=16, seed=3)
    corners = np.array([[2 + i % 4, 2 + i // 4, 11, 11] for i in range(16)], dtype=np.float32)
    target = Box(corners, label=None, iou=0.05)
    graph = vx.adapt(export(model, (3, 16, 16), ["detections"]), batch_size=batch_size)
    together = vx.explain(graph, x, method="occlusion", targets=target, window=4, stride=4)
    on_torch = vx.explain(model, x, method="occlusion", targets=target, window=4, stride=4)
    close(together.maps, on_torch.maps, atol=1e-4)


def write_png(path, x: np.ndarray) -> None:
    rgb = np.clip(np.round(x.transpose(1, 2, 0) * 255), 0, 255).astype(np.uint8)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


@pytest.mark.parametrize("case, target", [("yolov8", "box=2,2,11,11"), ("segmenter", "region=mask.png:1")])
def test_the_cli_explains_a_box_and_a_region_the_same_on_both_backends(case, target, tmp_path, monkeypatch):
    model, x, _, _, output = CASES[case]()
    monkeypatch.chdir(tmp_path)
    write_png(tmp_path / "input.png", np.clip(x[0], 0, 1))
    cv2.imwrite(str(tmp_path / "mask.png"), SEG_MASK.astype(np.uint8) * 255)
    (tmp_path / "model.onnx").write_bytes(export(model, tuple(x.shape[1:]), [output]))
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    factory = "target_models:tiny_yolo" if case == "yolov8" else "models:tiny_seg_net"
    common = ["input.png", "--method", "occlusion", "--target", target, "--option", "window=2", "--option", "stride=2"]
    assert main(["explain", "model.onnx", *common, "--out", "onnx"]) == 0
    assert main(["explain", factory, "--weights", "weights.pt", *common, "--out", "torch"]) == 0
    on_onnx, on_torch = np.load(tmp_path / "onnx" / "input.occlusion.npy"), np.load(tmp_path / "torch" / "input.occlusion.npy")
    close(on_onnx, on_torch, atol=1e-4)
    assert np.abs(on_onnx).max() > 0
