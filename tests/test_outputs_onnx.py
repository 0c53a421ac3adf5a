"""ONNX graphs beyond single-output classifiers: output selection, callable targets (every
gradient-free method agrees with torch within 1e-4), logits under a final Softmax/Sigmoid, and
graphs written the way other exporters write them (Constant-node weights, Shape-fed Reshape)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

import vexplain as vx
from models import close, images, onnx_bytes, seeded_cnn
from outputs_models import Squashed, ThreeHeads, TinyYolo, export, onnx_tensor_of, paddle_style
from vexplain.adapters.onnx_graph import find_cam_head

X = images(3, size=16, seed=8)
SHAPE = (3, 16, 16)
HEADS = ["boxes", "scores", "landmarks"]
#: methods that score class indices through the classifier's weights refuse callables
NEEDS_CLASS_INDICES = {m.name for m in vx.methods() if m.class_targets_only}
FAST = {"lime": {"alpha": 0.0}, "occlusion": {"window": 4, "stride": 4}, "rise": {"masks": 64}}
GRADIENT_FREE = sorted(m.name for m in vx.methods() if "onnx" in m.backends and m.name not in NEEDS_CLASS_INDICES)


def onnx_layer(adapter, model: torch.nn.Module, layer: str) -> str:
    return onnx_tensor_of(adapter, model, layer, X)


def test_gradient_free_methods_are_listed_from_the_registry():
    assert {"occlusion", "rise", "scorecam", "ablationcam", "eigencam"} <= set(GRADIENT_FREE)


# ------------------------------------------------------------------ a YOLO-style detector head


@pytest.mark.parametrize("method", GRADIENT_FREE)
def test_a_detector_head_with_a_callable_target_agrees_with_torch(method):
    model = TinyYolo().eval()
    graph = vx.adapt(export(model, SHAPE, ["detections"]))

    def class_1_of_anchor_5(out: torch.Tensor) -> torch.Tensor:  # (N, 4 + K, anchors): rows 4.. are class scores
        return out[:, 5, 5]

    info = {m.name: m for m in vx.methods()}[method]
    layer = {"layer": "backbone"} if "layer" in info.options else {}
    on_torch = vx.explain(model, X, method=method, targets=class_1_of_anchor_5, **FAST.get(method, {}), **layer)
    onnx_options = {"layer": onnx_layer(graph, model, "backbone")} if layer else {}
    on_onnx = vx.explain(graph, X, method=method, targets=class_1_of_anchor_5, **FAST.get(method, {}), **onnx_options)
    close(on_onnx.scores, model(torch.from_numpy(X))[:, 5, 5, None].detach(), atol=1e-5)
    close(on_onnx.maps, on_torch.maps, atol=1e-4)
    assert on_onnx.maps.std() > 0 and on_onnx.options["backend"] == "onnx"


def test_a_detector_output_and_class_targets_says_what_to_do():
    graph = export(TinyYolo(), SHAPE, ["detections"])
    with pytest.raises(vx.ModelLoadError, match=r"'detections' of shape \(3, 6, 64\); class-index targets need scores of shape \(N, K\): give targets= a callable"):
        vx.explain(graph, X, method="occlusion", targets=1)
    with pytest.raises(vx.UnsupportedCapability) as caught:  # no pooling head: the missing thing is the default layer
        vx.explain(graph, X, method="scorecam", targets=lambda out: out[:, 5, 5])
    assert caught.value.capability == "default CAM layer" and "pass layer=" in str(caught.value)
    assert "cam" not in caught.value.working_methods and "scorecam" in caught.value.working_methods
    with pytest.raises(vx.UnsupportedCapability, match="does not support 'classifier_weights'"):
        vx.explain(graph, X, method="cam")


# ------------------------------------------------------------------ a three-output model


def test_several_outputs_and_class_targets_is_an_error_listing_them():
    graph = export(ThreeHeads(), SHAPE, HEADS)
    with pytest.raises(vx.InvalidOption) as caught:
        vx.explain(graph, X, method="occlusion", targets=0)
    assert "has 3 outputs (0 'boxes' (batch, 4), 1 'scores' (batch, 3), 2 'landmarks' (batch, 10))" in str(caught.value)
    with pytest.raises(vx.InvalidOption, match="has no output 'score'; its outputs: 0 'boxes'"):
        vx.adapt(graph, output="score")
    with pytest.raises(vx.InvalidOption, match="output 3 is out of range"):
        vx.adapt(graph, output=3)


@pytest.mark.parametrize("output", ["scores", 1, -2])
def test_the_chosen_output_is_explained_and_cam_uses_its_classifier(output):
    model = ThreeHeads().eval()
    graph = vx.adapt(export(model, SHAPE, HEADS), output=output)
    expected = vx.explain(vx.adapt(model, output=1), X, method="cam", targets=[2, 0, 1])
    exp = vx.explain(graph, X, method="cam", targets=[2, 0, 1])
    close(exp.scores, model(torch.from_numpy(X))[1].detach(), atol=1e-5)
    close(exp.maps, expected.maps, atol=1e-5)
    assert exp.options["output"] == "scores" and exp.options["scores"] == "output"
    close(graph.classifier_weights().numpy(), model.scores.weight.detach().numpy())


@pytest.mark.parametrize("method", GRADIENT_FREE)
def test_callables_on_a_multi_output_graph_receive_a_dict(method):
    model = ThreeHeads().eval()
    graph = vx.adapt(export(model, SHAPE, HEADS))
    received = []

    def on_onnx(outputs: dict) -> torch.Tensor:
        received.append(sorted(outputs))
        return outputs["scores"][:, 2] - outputs["boxes"][:, 0]

    on_torch = vx.explain(model, X, method=method, targets=lambda out: out[1][:, 2] - out[0][:, 0], **FAST.get(method, {}))
    exp = vx.explain(graph, X, method=method, targets=on_onnx, **FAST.get(method, {}))
    assert received[0] == ["boxes", "landmarks", "scores"]
    close(exp.maps, on_torch.maps, atol=1e-4)
    assert exp.options.get("layer") in (None, "/backbone/backbone.3/Relu_output_0")


def test_batching_changes_nothing_for_callables_on_onnx():
    data = export(ThreeHeads(), SHAPE, HEADS)

    def score(outputs: dict) -> torch.Tensor:
        return outputs["landmarks"][:, 3] + outputs["scores"][:, 0]

    whole = vx.explain(vx.adapt(data), X, method="occlusion", targets=score, window=4, stride=2)
    small = vx.explain(vx.adapt(data, batch_size=2), X, method="occlusion", targets=score, window=4, stride=2, batch_size=5)
    one_by_one = np.concatenate([vx.explain(data, X[i : i + 1], method="rise", targets=score, masks=64).maps for i in range(3)])
    close(small.maps, whole.maps, atol=1e-6)
    close(one_by_one, vx.explain(vx.adapt(data, batch_size=2), X, method="rise", targets=score, masks=64).maps, atol=1e-6)


def test_a_callable_with_a_chosen_output_receives_that_tensor():
    model = ThreeHeads().eval()
    graph = vx.adapt(export(model, SHAPE, HEADS), output="landmarks")
    exp = vx.explain(graph, X, method="occlusion", targets=lambda landmarks: landmarks[:, 7], window=4)
    reference = vx.explain(vx.adapt(model, output=2), X, method="occlusion", targets=7, window=4)
    close(exp.maps, reference.maps, atol=1e-4)


# ------------------------------------------------------------------ logits, not probabilities


@pytest.mark.parametrize("kind, op", [("softmax", "Softmax"), ("sigmoid", "Sigmoid")])
def test_a_final_softmax_or_sigmoid_is_skipped_for_class_targets(kind, op):
    graph = export(Squashed(kind), SHAPE, ["probabilities"])
    logits = seeded_cnn(seed=0)
    exp = vx.explain(graph, X, method="occlusion", targets=[1, 2, 3], window=4)
    reference = vx.explain(logits, X, method="occlusion", targets=[1, 2, 3], window=4)
    close(exp.scores, logits(torch.from_numpy(X)).detach(), atol=1e-5)
    close(exp.maps, reference.maps, atol=1e-4)
    assert exp.options["scores"] == "logits" and exp.options["scores_from"].startswith(f"input of {op} node")
    cam = vx.explain(graph, X, method="cam", targets=[1, 2, 3])
    close(cam.maps, vx.explain(logits, X, method="cam", targets=[1, 2, 3]).maps, atol=1e-5)

    kept = vx.explain(vx.adapt(graph, scores="output"), X, method="occlusion", targets=[1, 2, 3], window=4)
    close(kept.scores, Squashed(kind)(torch.from_numpy(X)).detach(), atol=1e-6)
    assert kept.options["scores"] == "output" and "scores_from" not in kept.options
    # callables see the graph's output as it is: the probabilities
    seen = vx.explain(graph, X, method="occlusion", targets=lambda p: p[:, 1], window=4)
    close(seen.maps, vx.explain(vx.adapt(graph, scores="output"), X, method="occlusion", targets=1, window=4).maps, atol=1e-6)


def test_saturated_probabilities_hide_what_logits_show():
    """A class at probability 1.0 (float32) does not move when its evidence is occluded (drops of
    exactly 0 here); its logit does (drops up to 0.40)."""
    model = Squashed("softmax")
    top = int(model(torch.from_numpy(X[:1])).detach().argmax())
    with torch.no_grad():
        model.net.fc.bias[top] += 25.0  # the top class wins by a wide margin: its probability saturates
    graph = export(model, SHAPE, ["probabilities"])
    assert float(model(torch.from_numpy(X[:1])).detach()[0, top]) == 1.0  # saturated in float32
    on_logits = vx.explain(graph, X[:1], method="occlusion", targets=top, window=8, stride=8)
    on_probabilities = vx.explain(vx.adapt(graph, scores="output"), X[:1], method="occlusion", targets=top, window=8, stride=8)
    assert np.abs(on_logits.maps).max() > 0.1 and np.abs(on_probabilities.maps).max() < 1e-6


def test_scores_must_be_logits_or_output():
    with pytest.raises(vx.InvalidOption, match="scores must be 'logits'"):
        vx.adapt(export(Squashed("softmax"), SHAPE, ["p"]), scores="probabilities")


# ------------------------------------------------------------------ foreign graphs


def test_constant_node_weights_and_a_shape_fed_reshape_get_their_cam_head():
    model = seeded_cnn(seed=0)
    data = paddle_style(onnx_bytes(model, SHAPE))
    raw = onnx.load_from_string(data)
    assert not raw.graph.initializer and sum(n.op_type == "Constant" for n in raw.graph.node) >= 6
    assert find_cam_head(raw) is None  # unfolded, the weights are no initializers: folding is what finds the head
    adapter = vx.adapt(data)
    assert adapter.default_cam_layer() == "/features/features.3/Relu_output_0"
    assert adapter.folding == "onnxslim" or adapter.folding == "cached"
    exp = vx.explain(adapter, X, method="cam", targets=[0, 3, 4])
    close(exp.maps, vx.explain(model, X, method="cam", targets=[0, 3, 4]).maps, atol=1e-5)
    assert set(adapter.layer_shapes(torch.from_numpy(X))) == {
        "/features/features.0/Conv_output_0", "/features/features.1/Relu_output_0",
        "/features/features.2/Conv_output_0", "/features/features.3/Relu_output_0",
    }
    for name in adapter.layers():  # no Constant, Shape or shape arithmetic among the layers
        assert "Constant" not in name and "shape" not in name.lower()


def test_folding_is_cached_by_graph_content():
    data = paddle_style(onnx_bytes(seeded_cnn(seed=1), SHAPE))
    first, second = vx.adapt(data), vx.adapt(data)
    first.layers()
    second.layers()
    assert second.folding == "cached" and second.graph is first.graph


def test_without_a_folder_the_graph_is_read_as_exported_and_the_explanation_says_so(monkeypatch):
    from vexplain.adapters import onnx_fold

    monkeypatch.setattr(onnx_fold, "fold_with_onnxslim", lambda model: (None, "onnxslim is not installed: pip install onnxslim"))
    model = seeded_cnn(seed=5)
    exp = vx.explain(onnx_bytes(model, SHAPE), X, method="cam", targets=[1, 1, 1])  # torch's export needs no folding
    close(exp.maps, vx.explain(model, X, method="cam", targets=[1, 1, 1]).maps, atol=1e-5)
    assert exp.warnings == ["ONNX graph not constant-folded (onnxslim is not installed: pip install onnxslim); layers and the CAM head are read from the graph as exported"]
    with pytest.raises(vx.UnsupportedCapability, match="'classifier_weights'"):  # Constant-node weights stay unfound
        vx.explain(paddle_style(onnx_bytes(seeded_cnn(seed=6), SHAPE)), X, method="cam")
