"""Constant folding of ONNX graphs before vexplain reads them (layers, the CAM head, splits).

Exporters differ in what they leave behind: torch writes weights as initializers, PaddlePaddle
keeps them as ``Constant`` nodes, Ultralytics leaves shape arithmetic (``Shape → Gather →
Concat → Reshape``) in the graph. Folding turns every value that does not depend on the model's
input into an initializer, so a weight is a weight whoever exported it.

The folder is ``onnxslim`` (``onnxslim.slim`` with its pattern fusions skipped, so each node that
computes an activation keeps its output name): chosen by ``benchmarks/measure_constant_folding.py``
against ONNX Runtime's offline optimisation and ``onnxsim`` (see benchmarks/README.md). ORT's
basic level also folds but fuses Conv+BatchNorm and renames tensors, and writes its result only
to a file; ``onnxsim`` folds the same graphs, more slowly. When ``onnxslim`` is not installed or
fails on a graph, the graph is used unfolded (the adapter then warns in ``exp.warnings``).

Results are cached per process by a digest of the serialised graph (a few entries), so adapting
the same file again costs one hash.
"""
from __future__ import annotations

import collections
import hashlib
import threading
from typing import Any

#: folded graphs by BLAKE2 digest of the input graph's bytes, most recent last
_CACHE: "collections.OrderedDict[str, Any]" = collections.OrderedDict()
_CACHE_SIZE = 4
_LOCK = threading.Lock()


def graph_digest(data: bytes) -> str:
    """A BLAKE2 digest of serialised ONNX bytes (the cache key)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def folded(model: Any, data: bytes | None = None) -> tuple[Any, str]:
    """``(graph with constants folded, how)``: ``how`` is ``"onnxslim"``, ``"cached"`` or
    ``"unfolded: <reason>"`` (then the graph is ``model`` itself, and nothing is cached). ``data`` are ``model``'s serialised bytes when the caller has them."""
    data = model.SerializeToString() if data is None else data
    key = graph_digest(data)
    with _LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key], "cached"
    result, how = fold_with_onnxslim(model)
    if result is None:
        return model, f"unfolded: {how}"
    with _LOCK:
        _CACHE[key] = result
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return result, "onnxslim"


def fold_with_onnxslim(model: Any) -> tuple[Any | None, str]:
    """``onnxslim.slim`` limited to folding and dead-node removal; ``(None, reason)`` on failure."""
    try:
        import onnxslim
    except ImportError:
        return None, "onnxslim is not installed: pip install onnxslim"
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    try:
        result = onnxslim.slim(copy, skip_fusion_patterns=_fusion_names(), no_shape_infer=False)
    except Exception as error:  # onnxslim raises many types on graphs it cannot handle
        return None, f"onnxslim failed: {' '.join(str(error).split())[:200]}"
    if not isinstance(result, onnx.ModelProto):
        return None, "onnxslim returned no graph"
    return result, "onnxslim"


def fold_with_onnxsim(model: Any) -> Any:
    """``onnxsim.simplify`` (measured as an alternative; raises when it fails)."""
    import onnx
    import onnxsim

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    result, _ = onnxsim.simplify(copy, check_n=0, skip_fuse_bn=True)
    return result


def fold_with_ort(model: Any, directory: str) -> Any:
    """ONNX Runtime's offline optimisation at the basic level (folding, redundant nodes, simple
    fusions), written to ``directory`` and read back (measured as an alternative)."""
    import os

    import onnx
    import onnxruntime as ort

    path = os.path.join(directory, "optimized.onnx")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = path
    options.log_severity_level = 3
    ort.InferenceSession(model.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"])
    return onnx.load(path)


def _fusion_names() -> list[str]:
    """Every pattern fusion onnxslim knows (all skipped: only folding and dead-node removal run)."""
    try:
        from onnxslim.core.pattern.registry import DEFAULT_FUSION_PATTERNS
    except ImportError:
        return []
    return list(DEFAULT_FUSION_PATTERNS)

