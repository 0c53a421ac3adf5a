"""Reading an ONNX graph: layer tensors and their ranks, the pooling → classifier head, metadata."""
from __future__ import annotations

from typing import Any

import numpy as np

from vexplain.core.errors import ModelLoadError


def tensor_ranks(model) -> dict[str, int | None]:
    """Each node output's rank from shape inference (None when unknown), in graph order."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # shape inference is best effort; unknown ranks are allowed
        inferred = model
    infos = list(inferred.graph.value_info) + list(inferred.graph.output)
    ranks: dict[str, int | None] = {}
    known = {}
    for info in infos:
        tensor = info.type.tensor_type
        known[info.name] = len(tensor.shape.dim) if tensor.HasField("shape") else None
    for node in model.graph.node:
        for name in node.output:
            if name:
                ranks[name] = known.get(name)
    return ranks


def _initializers(model) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    return {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}


def _attribute(node, name: str, default: Any) -> Any:
    import onnx

    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default


def _is_global_pool(node, initializers: dict[str, np.ndarray]) -> bool:
    if node.op_type == "GlobalAveragePool":
        return True
    if node.op_type == "ReduceMean":
        axes = _attribute(node, "axes", None)
        if axes is None and len(node.input) > 1 and node.input[1] in initializers:
            axes = initializers[node.input[1]].tolist()
        return axes is not None and sorted(int(a) % 4 for a in axes) == [2, 3]
    return False


#: ops a pooled vector passes through on its way to the classifier, or the scores after it
_SHAPE_OPS = ("Flatten", "Reshape", "Squeeze", "Identity")
_AFTER_CLASSIFIER = ("Flatten", "Reshape", "Squeeze", "Identity", "Add", "Softmax", "Sigmoid")


def cam_heads(model) -> list[tuple[str, np.ndarray, str]]:
    """Every ``(pooled layer, (K, C) classifier weight, classifier output)`` in graph order.

    From each global average pooling the pooled tensor is followed through shape-only ops
    (Flatten, Reshape, Squeeze, Identity) to a Gemm or MatMul whose weight is an initializer
    (fold constants first: Constant-node weights count only once folded). ``Shape`` nodes that
    read the pooled tensor are ignored (they read its shape, not its values: exporters build a
    Reshape's target from them).
    """
    initializers = _initializers(model)
    consumers = _consumers(model)
    heads = []
    for node in model.graph.node:
        if not _is_global_pool(node, initializers):
            continue
        frontier = [node.output[0]]
        for _ in range(4):  # a pooled vector may feed several heads (boxes, scores, landmarks)
            following = [n for tensor in frontier for n in consumers.get(tensor, []) if n.op_type != "Shape" and n.input[0] == tensor]
            frontier = [n.output[0] for n in following if n.op_type in _SHAPE_OPS]
            for nxt in following:
                if nxt.op_type == "Gemm" and nxt.input[1] in initializers:
                    weight = initializers[nxt.input[1]]
                    weight = weight if _attribute(nxt, "transB", 0) else weight.T
                    heads.append((node.input[0], np.ascontiguousarray(weight, dtype=np.float32), nxt.output[0]))
                elif nxt.op_type == "MatMul" and nxt.input[1] in initializers:
                    heads.append((node.input[0], np.ascontiguousarray(initializers[nxt.input[1]].T, dtype=np.float32), nxt.output[0]))
    return heads


def find_cam_head(model, explained: str | None = None) -> tuple[str, np.ndarray] | None:
    """The tensor entering global average pooling and the ``(K, C)`` classifier weight after it,
    for the head whose classifier computes ``explained`` (directly, or through shape ops, a bias
    Add, Softmax or Sigmoid); with ``explained`` None, the last head. None when there is none."""
    heads = cam_heads(model)
    if explained is not None:
        consumers = _consumers(model)
        heads = [h for h in heads if _reaches(h[2], explained, consumers)]
    return (heads[-1][0], heads[-1][1]) if heads else None


def _reaches(tensor: str, explained: str, consumers: dict[str, list]) -> bool:
    for _ in range(8):
        if tensor == explained:
            return True
        following = [n for n in consumers.get(tensor, []) if n.op_type in _AFTER_CLASSIFIER and n.output]
        if len(following) != 1:
            return False
        tensor = following[0].output[0]
    return tensor == explained


def _consumers(model) -> dict[str, list]:
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    return consumers


def activation_names(model) -> list[str]:
    """Node outputs that may be feature maps: rank 4 or unknown, not computed from constants
    alone (``Constant`` nodes and what only they feed), in graph order."""
    ranks = tensor_ranks(model)
    constant = {init.name for init in model.graph.initializer}
    for node in model.graph.node:
        inputs = [n for n in node.input if n]
        if node.op_type in ("Constant", "ConstantOfShape", "Shape", "Size") or (inputs and all(n in constant for n in inputs)):
            constant.update(n for n in node.output if n)
    return [name for name, rank in ranks.items() if rank in (4, None) and name not in constant]


def with_extra_outputs(model, names: list[str]) -> bytes:
    """The model serialised with ``names`` (intermediate tensors) added as graph outputs."""
    import onnx

    extended = onnx.ModelProto()
    extended.CopyFrom(model)
    present = {o.name for o in extended.graph.output}
    for name in names:
        if name not in present:
            extended.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return extended.SerializeToString()


def read_metadata(model, source: str = "ONNX metadata_props") -> dict[str, Any]:
    """``vexplain.*`` entries of the model's metadata_props, JSON-decoded, without the prefix.

    Keys of the metadata schema (``core.model_metadata``: class_names, input_size, mean, std,
    channels) must hold JSON of their type, else ``ModelLoadError``; other keys keep their text when
    it is not JSON.
    """
    from vexplain.core.model_metadata import SCHEMA, check_metadata, parse_metadata_text

    metadata = {}
    for prop in model.metadata_props:
        if not prop.key.startswith("vexplain."):
            continue
        key = prop.key[len("vexplain.") :]
        where = f"{source} key {prop.key!r}"
        if key in SCHEMA:
            metadata[key] = parse_metadata_text(prop.value, where)
            continue
        try:
            metadata[key] = parse_metadata_text(prop.value, where)
        except ModelLoadError:
            metadata[key] = prop.value
    return check_metadata(metadata, source)
