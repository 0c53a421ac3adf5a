"""Models with several or structured outputs, and ONNX graphs as other exporters write them,
for tests/test_outputs_*.py and benchmarks/measure_constant_folding.py.

- ``TinyYolo``: a YOLOv8-style head, one output ``(N, 4 + K, A)``: boxes, then sigmoid class scores.
- ``ThreeHeads``: a face-detector-style model returning ``(boxes, scores, landmarks)``, whose last
  Linear in module order (landmarks) is not the one computing the class scores.
- ``DictHeads``: the same returning a dict; ``LogitsObject``: a Hugging Face-style object.
- ``paddle_style(model)``: an ONNX graph with every weight as a ``Constant`` node and the pooled
  tensor reshaped by a shape computed from a ``Shape`` node that reads it.
"""
from __future__ import annotations

import dataclasses
import io
import warnings

import numpy as np
import torch
from torch import nn

from models import seeded_cnn


class TinyYolo(nn.Module):
    """conv stack → a 1×1 head with 4 box and ``classes`` class channels per cell → ``(N, 4 + K, h·w)``."""

    def __init__(self, classes: int = 2) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, stride=2), nn.ReLU())
        self.head = nn.Conv2d(8, 4 + classes, 1)
        self.classes = classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.backbone(x)).flatten(2)
        return torch.cat([out[:, :4], torch.sigmoid(out[:, 4:])], dim=1)


class ThreeHeads(nn.Module):
    """Backbone → GAP → three Linear heads, returning ``(boxes (N, 4), scores (N, 3), landmarks (N, 10))``."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = seeded_cnn(seed=3).features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.boxes = nn.Linear(16, 4)
        self.scores = nn.Linear(16, 3)
        self.landmarks = nn.Linear(16, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.backbone(x)), 1)

    def forward(self, x: torch.Tensor):
        pooled = self.features(x)
        return self.boxes(pooled), self.scores(pooled), self.landmarks(pooled)


class DictHeads(ThreeHeads):
    def forward(self, x: torch.Tensor):
        boxes, scores, landmarks = super().forward(x)
        return {"boxes": boxes, "scores": scores, "landmarks": landmarks}


@dataclasses.dataclass
class ClassifierOutput:
    """Hugging Face-style: ``loss``, ``logits``, ``hidden_states``."""

    loss: torch.Tensor | None
    logits: torch.Tensor
    hidden_states: tuple | None


class LogitsObject(ThreeHeads):
    def forward(self, x: torch.Tensor) -> ClassifierOutput:
        features = self.backbone(x)
        return ClassifierOutput(None, self.scores(torch.flatten(self.pool(features), 1)), (features,))


class Squashed(nn.Module):
    """``seeded_cnn`` followed by softmax or sigmoid (probabilities as the only output)."""

    def __init__(self, kind: str, seed: int = 0) -> None:
        super().__init__()
        self.net = seeded_cnn(seed=seed)
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net(x)
        return torch.softmax(logits, dim=1) if self.kind == "softmax" else torch.sigmoid(logits)


def export(model: nn.Module, input_shape: tuple[int, int, int], outputs: list[str]) -> bytes:
    """``model`` exported (TorchScript exporter, opset 17) with the named outputs, batch dynamic."""
    buffer = io.BytesIO()
    dynamic = {"input": {0: "batch"}, **{name: {0: "batch"} for name in outputs}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(), (torch.zeros((1, *input_shape)),), buffer, dynamo=False, input_names=["input"],
            output_names=outputs, dynamic_axes=dynamic, opset_version=17,
        )
    return buffer.getvalue()


def paddle_style(data: bytes) -> bytes:
    """The graph with its initializers turned into ``Constant`` nodes and each Flatten after
    global pooling replaced by ``Reshape(pooled, Concat(Slice(Shape(pooled), 0, 1), [-1]))``,
    as PaddlePaddle's exporter writes them."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load_from_string(data)
    graph = model.graph
    constants = [helper.make_node("Constant", [], [init.name], name=f"const_{i}", value=init) for i, init in enumerate(graph.initializer)]
    pooled = {node.output[0] for node in graph.node if node.op_type == "GlobalAveragePool"}
    nodes = []
    for node in graph.node:
        if node.op_type == "Flatten" and node.input[0] in pooled:
            source, name = node.input[0], node.output[0]
            nodes += [
                helper.make_node("Shape", [source], [f"{name}_shape"]),
                helper.make_node("Constant", [], [f"{name}_zero"], value=numpy_helper.from_array(np.array([0], np.int64), f"{name}_zero")),
                helper.make_node("Constant", [], [f"{name}_one"], value=numpy_helper.from_array(np.array([1], np.int64), f"{name}_one")),
                helper.make_node("Constant", [], [f"{name}_minus"], value=numpy_helper.from_array(np.array([-1], np.int64), f"{name}_minus")),
                helper.make_node("Slice", [f"{name}_shape", f"{name}_zero", f"{name}_one"], [f"{name}_batch"]),
                helper.make_node("Concat", [f"{name}_batch", f"{name}_minus"], [f"{name}_target"], axis=0),
                helper.make_node("Reshape", [source, f"{name}_target"], [name]),
            ]
        else:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(constants + nodes)
    del graph.initializer[:]
    del graph.value_info[:]
    onnx.checker.check_model(model)
    return model.SerializeToString()


def onnx_tensor_of(graph, model: nn.Module, layer: str, x) -> str:
    """The ONNX tensor of ``graph`` (an ONNX adapter) holding torch module ``layer``'s output on
    inputs ``x``, matched by value (exporters name tensors their own way)."""
    captured = []
    handle = model.get_submodule(layer).register_forward_hook(lambda module, args, out: captured.append(out.detach()))
    try:
        model(torch.as_tensor(x))
    finally:
        handle.remove()
    bound = graph.with_score_function(lambda out: out.flatten(1)[:, 0])  # any output shape
    for name in graph.layer_shapes(torch.as_tensor(x)):
        value = bound.activations(torch.as_tensor(x), name).activations
        if value.shape == captured[0].shape and torch.allclose(value, captured[0], atol=1e-5):
            return name
    raise AssertionError(f"no ONNX tensor equals {layer}")
