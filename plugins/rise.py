"""RISE: randomized input sampling (Petsiuk, Das & Saenko, 2018)."""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from vexplain.core.adapter import FORWARD, ModelAdapter
from vexplain.core.errors import InvalidOption
from vexplain.core.explainer import Attribution, Explainer
from vexplain.core.engine_choice import auto_scorer, engine_option
from vexplain.core.hookspecs import hookimpl
from vexplain.core.budget import check_fits, memory_budget_mb
from vexplain.core.options import Option, boolean, integer, number, seed
from vexplain.core.perturbation import batch_options
from vexplain.core.progress import progress
from vexplain.core.targets import TargetRequest, gather_scores


class MaskSource:
    """The RISE masks for one seed: mask i depends only on (seed, i, cells, p, image size).

    All ``count`` binary ``cells × cells`` grids (keep probability ``p``) and shifts are drawn up
    front from one ``torch.Generator`` and kept as bools and int64s (``bytes_per_mask``);
    ``chunk(start, stop)`` turns grids
    ``start .. stop`` into float masks ``(B, H, W)``: each grid upsampled bilinearly
    (align_corners=False) to ((cells + 1)·⌈H/cells⌉, (cells + 1)·⌈W/cells⌉) and cropped to H × W at
    its random shift (0 ≤ dy < ⌈H/cells⌉, 0 ≤ dx < ⌈W/cells⌉), as in the paper.
    """

    def __init__(self, count: int, cells: int, p: float, seed: int, size: tuple[int, int], device: torch.device):
        generator = torch.Generator().manual_seed(seed)
        self.size = size
        self.cell = (math.ceil(size[0] / cells), math.ceil(size[1] / cells))
        self.grids = (torch.rand((count, 1, cells, cells), generator=generator) < p).to(device)
        self.dy = torch.randint(0, self.cell[0], (count,), generator=generator).to(device)
        self.dx = torch.randint(0, self.cell[1], (count,), generator=generator).to(device)
        self.cells = cells

    @staticmethod
    def bytes_per_mask(cells: int) -> int:
        """What one mask holds until the end of the call: its bool grid and two int64 shifts."""
        return cells * cells + 16

    def chunk(self, start: int, stop: int) -> torch.Tensor:
        big = ((self.cells + 1) * self.cell[0], (self.cells + 1) * self.cell[1])
        up = F.interpolate(self.grids[start:stop].float(), size=big, mode="bilinear", align_corners=False)[:, 0]
        device = up.device
        rows = self.dy[start:stop, None] + torch.arange(self.size[0], device=device)
        cols = self.dx[start:stop, None] + torch.arange(self.size[1], device=device)
        items = torch.arange(len(up), device=device)[:, None, None]
        return up[items, rows[:, :, None], cols[:, None, :]]


class Rise(Explainer):
    """RISE saliency S = Σ_i y_t(x ⊙ M_i) M_i / (masks · p): the expected target score under random
    smooth masks, given each pixel is kept (Petsiuk et al., eq. 6 with E[M] = p).

    y_t is the model's output as given (logits for most PyTorch models); ``softmax=True`` uses
    softmax(y)_t, the class probability the paper uses. Masks: see ``MaskSource``; the same seed
    gives the same masks whatever ``batch_size``, for every input. Masked inputs run in batches
    through the adapter's fastest exact engine (ONNX Runtime for a PyTorch model on the CPU).

    Defaults: ``masks`` = 2000 (the paper uses 4000 for ResNet-50; at the ~23 ms per image of a
    batched ONNX Runtime forward of a 224² ResNet-18 on 2 CPU cores, 2000 masks take about 45 s
    per image; the 64² demo model about 1 s), ``cells`` = 7, ``p`` = 0.5, ``seed`` = 0,
    ``softmax`` = False, ``batch_size`` derived from ``memory_mb`` = 1024, ``engine`` = "auto".
    Ranges: ``cells`` at most max(H, W) (one cell per pixel); the masks' grids and shifts
    (cells² + 16 bytes each) must fit ``memory_mb``, so ``masks`` is refused above
    memory_mb · 2²⁰ / (cells² + 16) before anything is drawn; ``seed`` in 0 .. 2⁶³ − 1.
    The estimate's sampling noise falls as 1/√masks: on the demo model, maps from two seeds
    correlate at Spearman ≈ 0.65 with 2000 masks of 7 × 7 cells and ≈ 0.85 with 4 × 4 cells; small
    images are better served by fewer cells or more masks.
    """

    name = "rise"
    requires = (FORWARD,)
    summary = "Σ_i y_t(x ⊙ M_i) M_i / (N·p) over random upsampled, shifted binary grid masks M_i: expected score when a pixel is kept"
    paper = "Petsiuk, Das & Saenko, RISE: Randomized Input Sampling for Explanation of Black-box Models, BMVC 2018"
    options = {
        "masks": Option(2000, integer(1), "number of random masks (their grids must fit memory_mb)"),
        "cells": Option(7, integer(1), "grid size s: each mask is an s × s binary grid before upsampling; at most max(H, W)"),
        "p": Option(0.5, number(above=0, maximum=1), "probability that a grid cell is kept"),
        "seed": Option(0, seed(), "seed of the masks, 0 .. 2**63 - 1"),
        "softmax": Option(False, boolean(), "score softmax(y)_t (the paper's probability) instead of y_t"),
        **batch_options("masked inputs per forward pass"),
        "engine": engine_option("forward", "which engine runs the masked batches"),
    }

    def attribute(self, adapter: ModelAdapter, inputs: torch.Tensor, targets: TargetRequest, options: dict[str, Any]) -> Attribution:
        if options["softmax"] and targets.score_function is not None:
            raise InvalidOption("rise softmax=True needs class scores; a callable target gives one score per input, whose softmax is always 1: drop softmax")
        count, device = options["masks"], inputs.device
        cells, largest_cells = options["cells"], max(inputs.shape[2:])
        if cells > largest_cells:
            raise InvalidOption(f"option 'cells' of method 'rise' is {cells}, finer than the {tuple(inputs.shape[2:])} image; give at most {largest_cells} (one cell per pixel)")
        check_fits("rise", "masks", count, MaskSource.bytes_per_mask(cells), memory_budget_mb("rise", options, device), "masks")
        scorer, batch_size, choice_notes = auto_scorer(adapter, self.name, inputs, options, count * len(inputs), count)
        source = MaskSource(count, cells, options["p"], options["seed"], tuple(inputs.shape[2:]), device)
        scores = torch.cat([scorer.run(inputs[start : start + batch_size]).to(device) for start in range(0, len(inputs), batch_size)])
        chosen = targets.select(scores)
        maps = torch.zeros((len(inputs), *inputs.shape[2:]), dtype=torch.float64, device=device)  # summation order varies with batch_size
        for start in progress(range(0, count, batch_size), total=-(-count // batch_size), description="rise"):
            masks = source.chunk(start, min(start + batch_size, count))
            wide = masks.double()
            for n in range(len(inputs)):
                masked_scores = scorer.run(inputs[n] * masks[:, None]).to(device)
                if options["softmax"]:
                    masked_scores = torch.softmax(masked_scores, dim=1)
                values = gather_scores(masked_scores, chosen[n].expand(len(masks)))
                maps[n] += torch.einsum("b,bhw->hw", values.double(), wide)
        notes = {"batch_size": batch_size, "engine": scorer.engine, **scorer.notes, **choice_notes}
        return Attribution(maps=(maps / (count * options["p"])).float(), scores=scores, targets=chosen, notes=notes)


@hookimpl
def register_explainers(register) -> None:
    register(Rise)
