"""Splitting an ONNX graph at a layer tensor: the part after it, run on replacement activations.

The tail is every node the scores depend on once the layer tensor is cut from its producer: the
layer tensor becomes a graph input. When some node of the tail also reads the model's input (a
path around the layer, such as a skip connection from before it), the model input stays an input
of the tail and is fed repeated once per replacement, so those nodes compute what they always did;
nodes that only feed the layer are dropped. Initializers the tail does not use are dropped too.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from vexplain.core.errors import InvalidOption

from .ort_session import run_batched


@dataclass
class Tail:
    """A session running the graph after ``layer``; ``reads_input``: the model input is fed too."""

    session: object
    layer: str
    input_name: str
    output_names: list[str]
    reads_input: bool
    fixed_batch: int | None

    def run(self, inputs: torch.Tensor, activations: torch.Tensor) -> list[torch.Tensor]:
        """The output tensors, each ``(B, ...)``, for the single input ``inputs`` ``(1, C, H, W)``
        with the layer's output replaced by each row of ``activations`` ``(B, c, h, w)``."""
        repeated = {self.input_name: inputs} if self.reads_input else None
        return run_batched(self.session, self.layer, list(self.output_names), activations, len(activations), self.fixed_batch, repeated)


def tail_model(model, layer: str, output_names: list[str] | str) -> tuple[bytes, bool]:
    """``(serialised tail graph, reads_input)`` for cutting ``model`` at tensor ``layer``, computing
    ``output_names`` (graph outputs or intermediate tensors, such as a Softmax's input)."""
    import onnx

    output_names = [output_names] if isinstance(output_names, str) else list(output_names)
    graph = model.graph
    producers = {name: node for node in graph.node for name in node.output}
    if layer not in producers:
        raise InvalidOption(f"'{layer}' is not produced by a node of the graph; pick a layer from `vexplain layers MODEL`")
    needed: set[str] = set()
    kept: set[int] = set()
    index = {id(node): i for i, node in enumerate(graph.node)}
    stack = list(output_names)
    while stack:
        name = stack.pop()
        if name in needed:
            continue
        needed.add(name)
        if name == layer or name not in producers:
            continue
        node = producers[name]
        kept.add(index[id(node)])
        stack.extend(n for n in node.input if n)
        for attribute in node.attribute:  # subgraphs (If, Loop) read outer tensors too
            if attribute.type == onnx.AttributeProto.GRAPH:
                stack.extend(_outer_names(attribute.g))
    if layer not in needed:
        raise InvalidOption(f"the scores do not depend on '{layer}'; pick a layer before the classifier")
    model_input = graph.input[0].name
    reads_input = model_input in needed
    tail = onnx.ModelProto()
    tail.CopyFrom(model)
    del tail.graph.node[:]
    tail.graph.node.extend(node for i, node in enumerate(graph.node) if i in kept)
    initializers = [init for init in graph.initializer if init.name in needed]
    del tail.graph.initializer[:]
    tail.graph.initializer.extend(initializers)
    del tail.graph.input[:]
    tail.graph.input.append(onnx.helper.make_tensor_value_info(layer, onnx.TensorProto.FLOAT, None))
    if reads_input:
        tail.graph.input.append(graph.input[0])
    del tail.graph.output[:]
    declared = {o.name: o for o in graph.output}
    tail.graph.output.extend(
        declared[name] if name in declared else onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in output_names
    )
    del tail.graph.value_info[:]  # shapes are re-inferred; the batch size of the tail may differ
    return tail.SerializeToString(), reads_input


def _outer_names(subgraph) -> list[str]:
    """Every tensor name read inside ``subgraph`` (and its own subgraphs)."""
    import onnx

    names = []
    for node in subgraph.node:
        names.extend(n for n in node.input if n)
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                names.extend(_outer_names(attribute.g))
    return names
