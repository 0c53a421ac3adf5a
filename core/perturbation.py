"""Shared machinery of perturbation methods: batch sizes from a memory budget, masked batches."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .adapter import BoxScorer, Scorer

#: a forward pass needs this many times the input's bytes for activations, as a rough bound
ACTIVATION_FACTOR = 32
#: upper bound of a derived batch: on small images (a 64x64 CNN, 2 CPU cores) batches of ~200
#: run 1.7x (ONNX Runtime) to 2x (torch) faster per image than batches of 64; large images are
#: bounded by the memory budget long before this (3x224x224: 55 at 1024 MB)
MAX_BATCH = 256
#: the same bound on a GPU, where kernel launches, not arithmetic, limit small batches
GPU_MAX_BATCH = 1024
#: the budget on a GPU when none is given: this fraction of its free memory, at most GPU_MAX_MB
GPU_FREE_FRACTION, GPU_MAX_MB = 0.25, 16384


def batch_size_for(input_shape: tuple[int, ...], memory_mb: float, factor: int = ACTIVATION_FACTOR, device: torch.device | None = None) -> int:
    """How many perturbed ``(C, H, W)`` inputs fit in ``memory_mb`` when each keeps ``factor`` times
    its bytes alive (activations; more for a backward pass), 1 .. ``MAX_BATCH`` (``GPU_MAX_BATCH``
    when ``device`` is a GPU)."""
    channels, height, width = input_shape[-3:]
    per_item = channels * height * width * 4 * factor
    cap = GPU_MAX_BATCH if device is not None and device.type == "cuda" else MAX_BATCH
    return int(max(1, min(cap, (memory_mb * 2**20) // per_item)))


def batch_options(per_pass: str) -> dict[str, Any]:
    """The ``batch_size`` and ``memory_mb`` options of a method or metric that runs ``per_pass``
    (e.g. "masked inputs per forward pass") at once: ``batch_size`` None derives it from
    ``memory_mb`` (default 1024) with :func:`derived_batch_size`."""
    from .options import Option, integer, number, optional

    return {
        "batch_size": Option(None, optional(integer(1)), f"{per_pass}; default from memory_mb"),
        "memory_mb": Option(1024, number(above=0), "memory budget from which batch_size is derived"),
    }


def derived_batch_size(options: dict[str, Any], item_shape: tuple[int, ...], factor: int = ACTIVATION_FACTOR) -> int:
    """``options["batch_size"]`` when given, else as many ``item_shape`` items as fit in
    ``options["memory_mb"]`` (:func:`batch_size_for`)."""
    return int(options["batch_size"] or batch_size_for(tuple(item_shape), options["memory_mb"], factor))


def default_memory_mb(device: torch.device) -> float:
    """The memory budget when none is given: 1024 MB on the CPU; on a GPU a quarter of its free
    memory, at most 16 GB. Free counts what PyTorch's caching allocator holds but does not use:
    the driver reports it as taken, and after a few large calls that is most of the GPU."""
    if device.type != "cuda":
        return 1024.0
    free, _ = torch.cuda.mem_get_info(device)
    free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return min(GPU_MAX_MB, GPU_FREE_FRACTION * free / 2**20)


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Start offsets of windows along one axis, every ``stride``, plus one flush with the far edge
    when the stride does not land there, so every pixel is covered."""
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] + window < length:
        starts.append(length - window)
    return starts


def box_indices(tops: torch.Tensor, lefts: torch.Tensor, window: tuple[int, int], shape: tuple[int, int, int]) -> torch.Tensor:
    """Flat indices, into a contiguous ``(B, C, H, W)`` batch of ``shape`` ``(C, H, W)`` items, of
    every element inside each ``window`` box at (top, left) of item b (all channels); boxes lie
    inside the image. Built once per chunk of windows, used by ``fill_boxes``."""
    channels, height, width = shape
    h, w = window
    device = tops.device
    items = torch.arange(len(tops), device=device)[:, None, None, None] * (channels * height * width)
    planes = torch.arange(channels, device=device)[None, :, None, None] * (height * width)
    rows = (tops[:, None, None, None] + torch.arange(h, device=device)[None, None, :, None]) * width
    cols = lefts[:, None, None, None] + torch.arange(w, device=device)[None, None, None, :]
    return (items + planes + rows + cols).reshape(-1)


def fill_boxes(image: torch.Tensor, boxes: torch.Tensor, baseline: float, out: torch.Tensor) -> torch.Tensor:
    """``out`` (contiguous ``(B, C, H, W)``) := ``image`` ``(C, H, W)`` with box b (``boxes`` from
    ``box_indices``) set to ``baseline`` in item b, written in place with one copy and one indexed
    fill (no full-size temporaries)."""
    out.copy_(image.unsqueeze(0).expand_as(out))
    out.view(-1).index_fill_(0, boxes, baseline)
    return out


def batched_box_scorers(
    scorer: "Scorer", images: torch.Tensor, window: tuple[int, int], baseline: float, field_limit: float | None = None
) -> list["BoxScorer"]:
    """A ``BoxScorer`` per image of ``images`` ``(N, C, H, W)`` that builds each batch of boxed
    copies in one buffer (shared by all of them, since they run one after another) and runs the
    full model on it: batched full inference. The clean scores come from one batched run. A
    ``field_limit`` cannot apply to full maps: the notes say it was ignored."""
    from .adapter import BoxScorer

    shape = tuple(images.shape[1:])
    buffers: list[torch.Tensor] = []

    def runner(image: torch.Tensor):
        def run(tops: torch.Tensor, lefts: torch.Tensor) -> torch.Tensor:
            if not buffers or len(buffers[0]) < len(tops):
                buffers[:] = [torch.empty((len(tops), *shape), dtype=image.dtype, device=image.device)]
            device = image.device
            boxes = box_indices(tops.to(device, non_blocking=True), lefts.to(device, non_blocking=True), window, shape)
            return scorer.run(fill_boxes(image, boxes, baseline, out=buffers[0][: len(tops)])).to(image.device)

        return run

    notes = dict(scorer.notes)
    if field_limit is not None:
        notes["field_limit_ignored"] = f"engine '{scorer.engine}' computes full feature maps"
    bases = scorer.run(images).to(images.device)
    return [BoxScorer(runner(image), base, scorer.engine, dict(notes)) for image, base in zip(images, bases)]


def box_sums(values: torch.Tensor, tops: torch.Tensor, lefts: torch.Tensor, size: tuple[int, int], window: tuple[int, int]) -> torch.Tensor:
    """``(N, H, W)``: for each row of ``values`` ``(N, B)``, the sum over boxes b covering each pixel
    of ``values[n, b]`` (box b: ``window`` high/wide at ``tops[b]``, ``lefts[b]``). Each value is
    placed at its box's corner and a box filter is read off summed-area tables (in float64), so it
    costs the same for any number of boxes."""
    count = values.shape[0]
    (height, width), (box_h, box_w) = size, window
    anchors = torch.zeros((count, height * width), dtype=torch.float64, device=values.device)
    anchors.index_add_(1, tops * width + lefts, values.to(torch.float64))
    table = torch.nn.functional.pad(anchors.reshape(count, height, width).cumsum(1).cumsum(2), (box_w, 0, box_h, 0))
    sums = table[:, box_h:, box_w:] - table[:, :height, box_w:] - table[:, box_h:, :width] + table[:, :height, :width]
    return sums.to(values.dtype)
