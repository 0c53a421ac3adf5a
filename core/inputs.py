"""Checking and converting user inputs to one float32 ``(N, C, H, W)`` tensor."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .errors import InvalidInput


def as_input_tensor(inputs: Any, expected_channels: int | None = None) -> torch.Tensor:
    """``inputs`` (numpy or torch, ``(N, C, H, W)`` or ``(C, H, W)``, float) as float32 NCHW.

    Torch tensors keep their device. Integer arrays are refused (inputs must be preprocessed),
    as are NaN/inf values and values beyond float32's range, empty batches, a channel count the
    model cannot take, and tensors holding no ordinary data: on the 'meta' device, sparse,
    nested or quantized. Tensors made under ``torch.inference_mode()`` are copied into ordinary
    ones, so gradient methods can use them.
    """
    if isinstance(inputs, np.ndarray):
        if not (np.issubdtype(inputs.dtype, np.floating)):
            raise InvalidInput(
                f"inputs must be a float array, already preprocessed (normalised); got dtype {inputs.dtype}"
            )
        _check_float32_range(inputs)
        tensor = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32))
    elif isinstance(inputs, torch.Tensor):
        _check_ordinary(inputs)
        if not inputs.is_floating_point():
            raise InvalidInput(
                f"inputs must be a float tensor, already preprocessed (normalised); got dtype {inputs.dtype}"
            )
        if inputs.dtype == torch.float64:
            _check_float32_range(inputs)
        tensor = inputs.detach().to(torch.float32)
        if tensor.is_inference():
            with torch.inference_mode(False):
                tensor = tensor.clone()
    else:
        raise InvalidInput(f"inputs must be a numpy array or a torch tensor of shape (N, C, H, W); got {type(inputs).__name__}")
    if tensor.dim() == 3:
        tensor = tensor.unsqueeze(0)
    if tensor.dim() != 4:
        raise InvalidInput(f"inputs must have shape (N, C, H, W) or (C, H, W); got shape {tuple(tensor.shape)}")
    if tensor.shape[0] == 0 or tensor.shape[2] == 0 or tensor.shape[3] == 0:
        raise InvalidInput(f"inputs must not be empty; got shape {tuple(tensor.shape)}")
    if expected_channels is not None and tensor.shape[1] != expected_channels:
        raise InvalidInput(
            f"inputs have {tensor.shape[1]} channels but the model takes {expected_channels}; "
            f"shape must be (N, {expected_channels}, H, W), got {tuple(tensor.shape)}"
        )
    finite = torch.isfinite(tensor)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise InvalidInput(f"inputs contain {bad} NaN or infinite values; all values must be finite")
    return tensor.contiguous()


def _check_ordinary(tensor: torch.Tensor) -> None:
    """``InvalidInput`` for a tensor whose values cannot be read as one dense array."""
    if tensor.device.type == "meta":
        raise InvalidInput("inputs are on the 'meta' device, which holds shapes but no values; give a tensor on 'cpu' or 'cuda'")
    if tensor.is_nested:
        raise InvalidInput("inputs are a nested tensor; give one dense (N, C, H, W) tensor of images of one size")
    if tensor.layout != torch.strided:
        raise InvalidInput(f"inputs are a {tensor.layout} tensor; give a dense one (tensor.to_dense())")
    if tensor.is_quantized:
        raise InvalidInput(f"inputs are a quantized {tensor.dtype} tensor; give float values (tensor.dequantize())")


def _check_float32_range(values: Any) -> None:
    """``InvalidInput`` when finite values exceed float32's range (they would become infinite)."""
    limit = float(np.finfo(np.float32).max)
    array = values.detach() if isinstance(values, torch.Tensor) else values
    too_large = (abs(array) > limit) & (abs(array) < float("inf"))
    count = int(too_large.sum())
    if count:
        raise InvalidInput(f"inputs contain {count} values beyond float32's range (±{limit:.4g}); scale them into it")
