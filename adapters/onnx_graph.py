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


def find_cam_head(model) -> tuple[str, np.ndarray] | None:
    """The tensor entering global average pooling and the ``(K, C)`` classifier weight after it.

    Follows the pooling output through shape-only ops (Flatten, Reshape, Squeeze) to a Gemm or
    MatMul whose weight is an initializer. None when the graph has no such head.
    """
    initializers = _initializers(model)
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    head = None
    for node in model.graph.node:
        if not _is_global_pool(node, initializers):
            continue
        tensor = node.output[0]
        for _ in range(4):
            following = consumers.get(tensor, [])
            if len(following) != 1:
                break
            nxt = following[0]
            if nxt.op_type in ("Flatten", "Reshape", "Squeeze"):
                tensor = nxt.output[0]
                continue
            if nxt.op_type == "Gemm" and nxt.input[1] in initializers:
                weight = initializers[nxt.input[1]]
                weight = weight if _attribute(nxt, "transB", 0) else weight.T
                head = (node.input[0], np.ascontiguousarray(weight, dtype=np.float32))
            elif nxt.op_type == "MatMul" and nxt.input[1] in initializers:
                head = (node.input[0], np.ascontiguousarray(initializers[nxt.input[1]].T, dtype=np.float32))
            break
    return head


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
