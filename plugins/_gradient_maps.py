"""Shared steps of the gradient family: channel reduction options and per-input target expansion.

A gradient method's ``attributions`` are per-channel values ``(N, C, H, W)``; its ``maps`` reduce
them over channels: ``reduce`` (``max``, ``sum`` or ``mean``) of ``|values|`` when ``abs`` is
True, of the signed values otherwise.
"""
from __future__ import annotations

from typing import Any, Iterator

import torch

from vexplain.core.adapter import ModelAdapter
from vexplain.core.options import Option, boolean, choice
from vexplain.core.targets import TargetRequest

#: a forward + backward pass keeps about this many bytes of activations per input byte (rough
#: bound); derived batches stop at 256 (``MAX_BATCH``): on 2 CPU cores a 64x64 CNN runs forward +
#: backward about 2x faster per image in batches of 256 than of 64
GRADIENT_MEMORY_FACTOR = 64

REDUCTIONS = {
    "max": lambda values: values.amax(dim=1),
    "sum": lambda values: values.sum(dim=1),
    "mean": lambda values: values.mean(dim=1),
}


def reduction_options(abs_default: bool, reduce_default: str) -> dict[str, Option]:
    """The ``abs`` and ``reduce`` options with the method's defaults."""
    return {
        "abs": Option(abs_default, boolean(), "take |attribution| before reducing over channels"),
        "reduce": Option(reduce_default, choice(*REDUCTIONS), "how channels are combined into the map: max, sum or mean"),
    }


def channel_map(values: torch.Tensor, options: dict[str, Any]) -> torch.Tensor:
    """``(N, H, W)``: ``options["reduce"]`` over channels of ``values`` (of ``|values|`` with ``abs``)."""
    return REDUCTIONS[options["reduce"]](values.abs() if options["abs"] else values)


def resolve_targets(adapter: ModelAdapter, inputs: torch.Tensor, targets: TargetRequest) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scores, chosen)`` on the unperturbed inputs: one forward pass, targets resolved per input."""
    scores = adapter.forward(inputs).to(inputs.device)
    return scores, targets.select(scores).to(inputs.device)


def request_for(chosen: torch.Tensor) -> TargetRequest:
    """A request giving each row of a derived batch (noisy copies, path points) its image's target."""
    return TargetRequest(chosen.detach().cpu(), len(chosen))


def pair_chunks(images: int, per_image: int, batch_size: int, device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(image index, sample index) pairs, image-major, in chunks of at most ``batch_size``, each
    built when it is reached (so no index array of images × per_image is ever held)."""
    total = images * per_image
    for start in range(0, total, batch_size):
        flat = torch.arange(start, min(start + batch_size, total), device=device)
        yield flat // per_image, flat % per_image
