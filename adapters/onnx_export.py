"""Exporting a PyTorch model to ONNX once per (model, weights, input shape), for perturbation runs.

The exporter is the TorchScript-based one (``dynamo=False``): it needs torch alone, writes one
self-contained file and takes about a second for a ResNet-18. The cache is keyed on the module
object (weakly) plus a digest of its parameters' and buffers' values, so changing the weights in
any way triggers a new export instead of serving stale results.
"""
from __future__ import annotations

import hashlib
import io
import threading
import warnings
import weakref
from typing import Any, Callable

import torch

from vexplain.core.concurrency import no_model_running

_CACHE: "weakref.WeakKeyDictionary[torch.nn.Module, dict]" = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def weights_fingerprint(module: torch.nn.Module) -> tuple:
    """Every parameter's and buffer's name, shape, dtype and a BLAKE2 digest of its bytes.

    Hashing the values (about 50 ms for a ResNet-18's 45 MB here) catches every way weights
    change, including edits through ``param.data`` that leave autograd's version counter alone.
    """
    tensors = list(module.named_parameters()) + list(module.named_buffers())
    return tuple((name, tuple(t.shape), str(t.dtype), _digest(t)) for name, t in tensors)


def _digest(tensor: torch.Tensor) -> str:
    raw = tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy()
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


def export_onnx(module: torch.nn.Module, input_shape: tuple[int, int, int], opset: int = 17) -> bytes:
    """The module (in eval mode, on the CPU) as ONNX bytes with a dynamic batch dimension.

    No other model runs meanwhile: the exporter's state (``torch.onnx.is_in_onnx_export()``,
    the opset) and the warning filters it runs under are process-wide."""
    dummy = torch.zeros((1, *input_shape), dtype=torch.float32, device=_device_of(module))
    buffer = io.BytesIO()
    with no_model_running(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # a tracer warning means Python control flow or a Python number was frozen into the graph
        # (a branch on a tensor's value, say): the export would silently compute something else
        warnings.simplefilter("error", torch.jit.TracerWarning)
        torch.onnx.export(
            module,
            (dummy,),
            buffer,
            dynamo=False,
            input_names=["input"],
            output_names=["scores"],
            dynamic_axes={"input": {0: "batch"}, "scores": {0: "batch"}},
            opset_version=opset,
            do_constant_folding=True,
        )
    return buffer.getvalue()


def cached_export(module: torch.nn.Module, input_shape: tuple[int, int, int], build: Callable[[bytes], Any]) -> tuple[Any, bool]:
    """``(build(onnx_bytes), was_cached)`` for ``module`` at ``input_shape`` ``(C, H, W)``.

    ``build`` turns the exported bytes into what is kept (an ONNX Runtime session, say); one
    entry per module is kept, replaced when the weights or the input shape change.
    """
    key = (tuple(input_shape), weights_fingerprint(module))
    with _LOCK:
        entries = _CACHE.setdefault(module, {})
        if key in entries:
            return entries[key], True
    built = build(export_onnx(module, input_shape))
    with _LOCK:
        entries.clear()
        entries[key] = built
    return built, False


def _device_of(module: torch.nn.Module) -> torch.device:
    for tensor in list(module.parameters()) + list(module.buffers()):
        return tensor.device
    return torch.device("cpu")
