"""Reduced precision for PyTorch forward passes (opt-in, approximate): bf16 or fp16 autocast.

Convolutions and matrix products run in the reduced type, so the model's output comes out in it
(the adapter widens scores to float32 afterwards); autocast keeps reductions such as sums in
float32. Whether this is faster depends on where the time goes: on one H100 it made batched full
inference of a ResNet-50 up to 1.5× faster, the launch-bound incremental engine at most 1.2×
(benchmarks/README.md). The error is measured, not assumed: :func:`precision_error` compares the
unoccluded scores with true float32 ones (:func:`true_float32`).
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


@contextlib.contextmanager
def true_float32() -> Iterator[None]:
    """TF32 off inside the block (convolutions and matrix products in full float32 on GPUs that
    would otherwise round their inputs to 10-bit mantissas); the previous flags restored after."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
