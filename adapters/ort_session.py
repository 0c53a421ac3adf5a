"""ONNX Runtime sessions: providers, session options, and batched runs of torch tensors."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from vexplain.core.errors import ModelLoadError


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
    """
    rows = {name: value.detach().to("cpu", torch.float32).numpy()[:1] for name, value in (repeated or {}).items()}
    array = inputs.detach().to("cpu", torch.float32).numpy()
    step = fixed_batch or max(1, int(batch_size))
    collected: list[list[np.ndarray]] = [[] for _ in output_names]
    for start in range(0, array.shape[0], step):
        chunk = array[start : start + step]
        real = chunk.shape[0]
        if fixed_batch and real < fixed_batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], fixed_batch - real, axis=0)])
        feed = {input_name: np.ascontiguousarray(chunk)}
        feed.update({name: np.ascontiguousarray(np.repeat(row, len(chunk), axis=0)) for name, row in rows.items()})
        outputs = session.run(output_names, feed)
        for store, value in zip(collected, outputs):
            store.append(np.asarray(value)[:real])
    return [torch.from_numpy(np.concatenate(parts).astype(np.float32, copy=False)) for parts in collected]
