"""Checking and converting user inputs to one float32 ``(N, C, H, W)`` tensor."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .errors import InvalidInput


def as_input_tensor(inputs: Any, expected_channels: int | None = None) -> torch.Tensor:
    """``inputs`` (numpy or torch, ``(N, C, H, W)`` or ``(C, H, W)``, float) as float32 NCHW.

    Torch tensors keep their device. Integer arrays are refused (inputs must be preprocessed),
    as are NaN/inf values, empty batches and a channel count the model cannot take.
    """
    if isinstance(inputs, np.ndarray):
        if not (np.issubdtype(inputs.dtype, np.floating)):
            raise InvalidInput(
                f"inputs must be a float array, already preprocessed (normalised); got dtype {inputs.dtype}"
            )
        tensor = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32))
    elif isinstance(inputs, torch.Tensor):
        if not inputs.is_floating_point():
            raise InvalidInput(
                f"inputs must be a float tensor, already preprocessed (normalised); got dtype {inputs.dtype}"
            )
        tensor = inputs.detach().to(torch.float32)
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
