"""ONNX Runtime sessions: providers, session options, and batched runs of torch tensors."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from vexplain.core.errors import InvalidInput, ModelLoadError, VexplainError

#: numpy types of the ONNX float tensor types vexplain can feed
_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


def default_providers() -> list[str]:
    """CUDA first when this onnxruntime build has it, then CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    preferred = [p for p in ("CUDAExecutionProvider",) if p in available]
    return preferred + ["CPUExecutionProvider"]


def make_session(model_bytes: bytes, providers: Sequence[str] | None = None, threads: int | None = None):
    """An ``InferenceSession`` with all graph optimisations; ``threads`` = intra-op threads (0: ORT decides)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = int(threads)
    try:
        return ort.InferenceSession(model_bytes, sess_options=options, providers=list(providers or default_providers()))
    except Exception as error:  # onnxruntime raises its own exception types for invalid graphs
        message = " ".join(str(error).split())[:300]
        raise ModelLoadError(f"ONNX Runtime cannot load this model: {message}") from None


def run_batched(
    session,
    input_name: str,
    output_names: list[str],
    inputs: torch.Tensor,
    batch_size: int,
    fixed_batch: int | None = None,
    repeated: dict[str, torch.Tensor] | None = None,
) -> list[torch.Tensor]:
    """``session`` run over ``inputs`` in batches; each named output concatenated, as CPU torch tensors.

    With ``fixed_batch`` (a graph whose batch dimension is fixed), batches have exactly that size,
    the last one padded by repeating its final row and the padding dropped afterwards.
    ``repeated``: further graph inputs, each one ``(1, ...)`` row fed repeated to every batch's size.
    Inputs are fed as the graph's input type (float, float16 or double); outputs come back float32.
    A failed run raises ``InvalidInput`` (:func:`run_error`).
    """
    rows = {name: value.detach().to("cpu", torch.float32).numpy()[:1] for name, value in (repeated or {}).items()}
    array = inputs.detach().to("cpu", torch.float32).numpy()
    types = {graph_input.name: _NUMPY_TYPES.get(graph_input.type, np.float32) for graph_input in session.get_inputs()}
    step = fixed_batch or max(1, int(batch_size))
    collected: list[list[np.ndarray]] = [[] for _ in output_names]
    for start in range(0, array.shape[0], step):
        chunk = array[start : start + step]
        real = chunk.shape[0]
        if fixed_batch and real < fixed_batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], fixed_batch - real, axis=0)])
        feed = {input_name: np.ascontiguousarray(chunk)}
        feed.update({name: np.ascontiguousarray(np.repeat(row, len(chunk), axis=0)) for name, row in rows.items()})
        feed = {name: value.astype(types.get(name, np.float32), copy=False) for name, value in feed.items()}
        try:
            outputs = session.run(output_names, feed)
        except Exception as error:  # onnxruntime's own exception types derive from Exception only
            raise run_error(session, feed, error) from None
        for store, value in zip(collected, outputs):
            store.append(np.asarray(value)[:real])
    return [torch.from_numpy(np.concatenate(parts).astype(np.float32, copy=False)) for parts in collected]


def run_error(session, feed: dict[str, np.ndarray], error: Exception) -> VexplainError:
    """``error`` from ``session.run(..., feed)`` as one line: the given shapes against the graph's
    declared input shapes (symbolic dimensions by name), and ONNX Runtime's reason."""
    declared = {graph_input.name: graph_input.shape for graph_input in session.get_inputs()}
    given = "; ".join(
        f"input '{name}' got {tuple(value.shape)} but the model expects {_shape_text(declared.get(name))}" for name, value in feed.items()
    )
    reason = " ".join(str(error).split())
    reason = reason.split(" : ", 3)[-1] if reason.startswith("[ONNXRuntimeError]") else reason
    if "invalid dimensions" in reason or "Invalid rank" in reason:
        return InvalidInput(f"the inputs do not fit the ONNX model: {given}; resize or reshape the inputs to the expected shape")
    return InvalidInput(f"ONNX Runtime could not run the model ({given}): {reason[:300]}")


def _shape_text(shape) -> str:
    if shape is None:
        return "no such input"
    return "(" + ", ".join(str(d) if isinstance(d, int) else str(d or "?") for d in shape) + ")"
