"""Token-grid layers of an ONNX vision transformer: the patch embedding's stride read from the
graph, and the ``(N, T, D)`` tensors that can be a CAM method's ``layer=``.

The patch embedding is the first ``Conv`` node (graph order) whose strides equal its kernel shape
and exceed 1, as for PyTorch models (``token_grids.find_patch_stride``); its kernel shape is the
node's ``kernel_shape`` attribute or, when absent, the weight initializer's last two dimensions.
The grid and prefix tokens of a token layer are then inferred from that stride and the input size
by ``core.token_grids.token_layout``, like the torch adapter's; ``grid=`` / ``prefix=`` override.
"""
from __future__ import annotations

from typing import Any

from .onnx_graph import tensor_ranks


def _ints(node: Any, name: str) -> list[int] | None:
    for attribute in node.attribute:
        if attribute.name == name:
            return list(attribute.ints)
    return None


def graph_patch_stride(model: Any) -> tuple[int, int] | None:
    """The stride of the graph's patch embedding, or ``None`` when no Conv has stride = kernel > 1."""
    shapes = {init.name: list(init.dims) for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        strides = _ints(node, "strides")
        kernel = _ints(node, "kernel_shape")
        if kernel is None and len(node.input) > 1 and node.input[1] in shapes:
            kernel = shapes[node.input[1]][2:]
        if strides and kernel and len(strides) == 2 and list(strides) == list(kernel) and max(strides) > 1:
            return (int(strides[0]), int(strides[1]))
    return None


def token_tensor_names(model: Any) -> list[str]:
    """Node outputs of rank 3 (possible ``(N, T, D)`` token layers) not computed from constants
    alone, in graph order; empty when the graph has no patch embedding."""
    if graph_patch_stride(model) is None:
        return []
    constant = {init.name for init in model.graph.initializer}
    for node in model.graph.node:
        inputs = [n for n in node.input if n]
        if node.op_type in ("Constant", "ConstantOfShape", "Shape", "Size") or (inputs and all(n in constant for n in inputs)):
            constant.update(n for n in node.output if n)
    return [name for name, rank in tensor_ranks(model).items() if rank == 3 and name not in constant]
