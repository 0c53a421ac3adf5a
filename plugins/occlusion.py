"""Occlusion sensitivity (Zeiler & Fergus, 2014)."""
from __future__ import annotations

from typing import Any

import torch

from vexplain.core.adapter import FORWARD, ModelAdapter
from vexplain.core.errors import InvalidOption
from vexplain.core.explainer import Attribution, Explainer
from vexplain.core.hookspecs import hookimpl
from vexplain.core.options import Option, choice, int_pair, integer, number, optional
from vexplain.core.perturbation import batch_size_for, box_indices, box_masks, fill_boxes, window_starts
from vexplain.core.progress import progress
from vexplain.core.targets import TargetRequest, gather_scores


class Occlusion(Explainer):
    """Δ = y_t(x) − y_t(x with a window set to ``baseline``), averaged over the windows covering
    each pixel (all channels are occluded together).

    Defaults: ``window`` = min(H, W) // 8 (at least 1) square, ``stride`` = window // 2 (at least
    1), ``baseline`` = 0.0 (the mean after normalisation), ``batch_size`` derived from
    ``memory_mb`` = 1024, ``engine`` = "auto" (ONNX Runtime for a PyTorch model on the CPU, the
    model's own device otherwise). Windows run every ``stride`` pixels plus one flush with the far
    edge when the stride does not reach it, so every pixel is covered; where (H − h) and (W − w)
    are multiples of the stride this equals Captum's ``Occlusion`` with window (C, h, w) and
    strides (C, sh, sw).
    """

    name = "occlusion"
    requires = (FORWARD,)
    summary = "drop in the class score when a window of the image is set to a baseline, averaged over covering windows"
    paper = "Zeiler & Fergus, Visualizing and Understanding Convolutional Networks, ECCV 2014"
    options = {
        "window": Option(None, optional(int_pair()), "window size k or (h, w); default min(H, W) // 8"),
        "stride": Option(None, optional(int_pair()), "step k or (sh, sw); default window // 2"),
        "baseline": Option(0.0, number(), "value written into the occluded window (in preprocessed units)"),
        "batch_size": Option(None, optional(integer(1)), "occluded images per forward pass; default from memory_mb"),
        "memory_mb": Option(1024, number(), "memory budget from which batch_size is derived"),
        "engine": Option("auto", choice("auto", "onnx", "torch"), "which engine runs the occluded batches"),
    }

    def attribute(self, adapter: ModelAdapter, inputs: torch.Tensor, targets: TargetRequest, options: dict[str, Any]) -> Attribution:
        height, width = inputs.shape[2:]
        window = options["window"] or (max(1, min(height, width) // 8),) * 2
        stride = options["stride"] or (max(1, window[0] // 2), max(1, window[1] // 2))
        if window[0] > height or window[1] > width:
            raise InvalidOption(f"occlusion window {window} is larger than the image ({height}, {width}); use a window at most that size")
        batch_size = options["batch_size"] or batch_size_for(tuple(inputs.shape[1:]), options["memory_mb"])
        scorer = adapter.scorer(options["engine"], sample=inputs[:1])
        device = inputs.device
        tops, lefts = torch.meshgrid(
            torch.tensor(window_starts(height, window[0], stride[0]), device=device),
            torch.tensor(window_starts(width, window[1], stride[1]), device=device),
            indexing="ij",
        )
        tops, lefts = tops.reshape(-1), lefts.reshape(-1)
        scores = scorer.run(inputs).to(device)
        chosen = targets.select(scores)
        base = gather_scores(scores, chosen)
        maps = torch.zeros((len(inputs), height, width), device=device)
        coverage = torch.zeros((height, width), device=device)
        # window chunks outside, images inside: each chunk's masks are built once for all images,
        # and every occluded batch is written into one reused buffer (each map still sums its
        # chunks in the same order, so the result is unchanged)
        chunks = [(s, n) for s in range(0, len(tops), batch_size) for n in range(len(inputs))]
        buffer = torch.empty((min(batch_size, len(tops)), *inputs.shape[1:]), dtype=inputs.dtype, device=device)
        masks = boxes = None
        for start, n in progress(chunks, total=len(chunks), description="occlusion"):
            if n == 0:
                chunk_tops, chunk_lefts = tops[start : start + batch_size], lefts[start : start + batch_size]
                masks = box_masks(chunk_tops, chunk_lefts, (height, width), window, device)
                boxes = box_indices(chunk_tops, chunk_lefts, window, tuple(inputs.shape[1:]))
                coverage += masks[:, 0].sum(dim=0)
            batch = fill_boxes(inputs[n], boxes, options["baseline"], out=buffer[: len(masks)])
            occluded_scores = scorer.run(batch).to(device)
            drop = base[n] - occluded_scores[:, chosen[n]]
            maps[n] += torch.einsum("b,bhw->hw", drop, masks[:, 0])
        notes = {
            "window": window,
            "stride": stride,
            "batch_size": batch_size,
            "engine": scorer.engine,
            "windows": len(tops),
            **scorer.notes,
        }
        return Attribution(maps=maps / coverage, scores=scores, targets=chosen, notes=notes)


@hookimpl
def register_explainers(register) -> None:
    register(Occlusion)
