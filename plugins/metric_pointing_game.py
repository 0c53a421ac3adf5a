"""The pointing game (Zhang et al., 2016), beside its centre-point baseline."""
from __future__ import annotations

from typing import Any

import torch

from vexplain.core.adapter import FORWARD
from vexplain.core.errors import InvalidInput, InvalidOption
from vexplain.core.hookspecs import hookimpl
from vexplain.core.metric import MASKS, EvaluationCase, Metric, MetricResult
from vexplain.core.metric_tools import peaks, within
from vexplain.core.options import Option, integer, optional

#: Zhang et al. use 15 pixels on 224-pixel images
PAPER_TOLERANCE = 15
PAPER_SIZE = 224


def default_tolerance(height: int, width: int) -> int:
    """Zhang et al.'s 15 px at 224 px, scaled to the shorter side: round(15 · min(H, W) / 224)."""
    return int(round(PAPER_TOLERANCE * min(height, width) / PAPER_SIZE))


class PointingGame(Metric):
    """A hit when the map's maximum (the first in row-major order on ties) lies within
    ``tolerance`` pixels (Euclidean) of the ground-truth mask or box; ``hit`` is 1.0 or 0.0 per
    image, higher is better. ``baseline_hit`` scores the image centre (H // 2, W // 2) by the same
    rule, the baseline Zhang et al. report beside every method.

    Default: ``tolerance`` = round(15 · min(H, W) / 224), the paper's 15 px at 224 px scaled to the
    input (4 px at 64 × 64); at most H + W, from where every point is a hit.
    """

    name = "pointing_game"
    requires = (FORWARD,)
    needs = (MASKS,)
    summary = "whether the map's maximum lies within a tolerance of the object (higher is better; centre-point baseline beside it)"
    paper = "Zhang et al., Top-down Neural Attention by Excitation Backprop, ECCV 2016"
    headline = "hit"
    higher_is_better = True
    options = {
        "tolerance": Option(None, optional(integer(0)), "pixels between the maximum and the mask that still count as a hit; default round(15*min(H,W)/224)"),
    }

    def evaluate(self, case: EvaluationCase, options: dict[str, Any]) -> MetricResult:
        masks = case.masks.cpu()
        empty = [i for i, mask in enumerate(masks) if not bool(mask.any())]
        if empty:
            raise InvalidInput(f"pointing_game needs a non-empty mask for every image; images {empty} have none")
        height, width = masks.shape[1:]
        tolerance = options["tolerance"] if options["tolerance"] is not None else default_tolerance(height, width)
        if tolerance > height + width:
            raise InvalidOption(f"option 'tolerance' of metric 'pointing_game' is {tolerance}; on {height}x{width} images any point is a hit from {height + width} on: give at most {height + width}")
        found = peaks(case.maps.cpu())
        centre = torch.tensor([[height // 2, width // 2]]).expand(len(masks), 2)
        return MetricResult(
            values={
                "hit": within(found, masks, tolerance).double().numpy(),
                "baseline_hit": within(centre, masks, tolerance).double().numpy(),
            },
            notes={"tolerance": tolerance},
        )


@hookimpl
def register_metrics(register) -> None:
    register(PointingGame)
