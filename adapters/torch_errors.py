"""PyTorch's errors on a model call that say the inputs do not fit the model, as ``InvalidInput``.

PyTorch reports an input smaller than a network's receptive field, or of a size its classifier
was not built for, as a ``RuntimeError`` deep inside a layer. ``call_error`` recognises those
messages and turns them into one line naming the inputs' shape and what would fit; any other
error is left to propagate as it is (a fault of the model's own code stays the model's).
"""
from __future__ import annotations

import itertools
import re

import torch

from vexplain.core.errors import InvalidInput

#: PyTorch's messages for a spatial size a layer cannot take (convolution, pooling, unfold)
_TOO_SMALL = (
    "Kernel size can't be greater than actual input size",
    "Output size is too small",
    "input image is smaller than kernel",
    "pad should be smaller than or equal to half of kernel size",
    "Padding size should be less than the corresponding input dimension",
)
_MATMUL = re.compile(r"mat1 and mat2 shapes cannot be multiplied \((\d+)x(\d+) and (\d+)x(\d+)\)")


def call_error(described: str, batch: torch.Tensor, error: RuntimeError) -> InvalidInput | None:
    """``InvalidInput`` for ``error`` raised by the model ``described`` on ``batch`` when it says
    the input's size does not fit the model; None for any other error."""
    message = " ".join(str(error).split())
    size = "x".join(map(str, batch.shape[2:])) if batch.dim() == 4 else "x".join(map(str, batch.shape[1:]))
    if any(text in message for text in _TOO_SMALL):
        return InvalidInput(
            f"inputs of {size} pixels are too small for {described}, below its receptive field ({_first_sentence(message)}); give larger inputs"
        )
    matmul = _MATMUL.search(message)
    if matmul:
        got, wants = matmul.group(2), matmul.group(3)
        return InvalidInput(
            f"inputs of {size} pixels do not fit {described}: its Linear layer takes {wants} features but got {got}; give inputs of the size the model was built for"
        )
    return None


def _first_sentence(message: str) -> str:
    return message.split(". ")[0].rstrip(".")[:160]


def parameter_dtype(model: torch.nn.Module) -> torch.dtype:
    """The dtype of ``model``'s first floating parameter (else buffer), which its inputs must have;
    float32 when it has none."""
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32
