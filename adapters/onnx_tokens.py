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


def default_token_tensor(model: Any, grids: dict[str, dict[str, Any]]) -> str | None:
    """The default CAM layer among the token tensors ``grids`` (name → layout notes, graph order),
    as the torch adapter chooses it (``token_grids.default_token_layer``): the last token tensor
    that no ``LayerNormalization`` computes (the last block's output before the final norm) when it
    has no prefix tokens; with a class token, whose patch tokens then get no gradient, the
    normalised input of the last attention: the nearest ``LayerNormalization`` output above the
    graph's last ``Softmax`` (``blocks[-1].norm1`` of a pre-norm ViT). None without token tensors."""
    producers = {output: node for node in model.graph.node for output in node.output}
    normalised = {name for name, node in producers.items() if node.op_type == "LayerNormalization"}
    blocks = [name for name in grids if name not in normalised]
    if not blocks:
        return None
    if not grids[blocks[-1]]["prefix"]:
        return blocks[-1]
    softmaxes = [node for node in model.graph.node if node.op_type == "Softmax"]
    frontier = list(softmaxes[-1].input) if softmaxes else []
    seen: set[str] = set()
    while frontier:  # breadth first: the nearest normalisation above the attention
        name = frontier.pop(0)
        if name in seen or name not in producers:
            continue
        seen.add(name)
        if name in normalised and name in grids:
            return name
        frontier.extend(producers[name].input)
    return blocks[-1]
