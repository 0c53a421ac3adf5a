"""Reduced precision for PyTorch forward passes (opt-in, approximate): bf16 or fp16 autocast.

Convolutions and matrix products run in the reduced type (on an H100 or a CPU with AMX they run
several times faster); reductions and the returned scores stay float32. The error this causes is
measured, not assumed: :func:`precision_error` compares the unoccluded scores with float32 ones.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch

#: the values of the ``precision`` option and the autocast type each selects (None: float32)
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@contextlib.contextmanager
def reduced_precision(device: torch.device, precision: str) -> Iterator[None]:
    """Autocast to ``precision`` on ``device`` inside the block; "fp32" changes nothing."""
    dtype = PRECISIONS[precision]
    if dtype is None:
        yield
        return
    with torch.autocast(device.type, dtype=dtype):
        yield


def precision_error(exact: torch.Tensor, reduced: torch.Tensor) -> float:
    """max |float32 score − reduced-precision score| over the unoccluded images and classes."""
    return float((exact.float() - reduced.float()).abs().max())
