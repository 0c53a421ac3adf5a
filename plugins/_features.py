"""Shared steps of the feature-based methods: scores of an image with chosen features replaced by
a baseline value, run in batches through the adapter's fastest exact forward engine.

A *coalition* is a row of a ``(S, F)`` 0/1 matrix: feature f kept (1, the image's pixels) or
removed (0, every channel of its pixels set to ``baseline``).
"""
from __future__ import annotations

from typing import Any

import torch

from vexplain.core.adapter import ModelAdapter, Scorer
from vexplain.core.options import Option, number
from vexplain.core.engine_choice import auto_scorer, engine_option
from vexplain.core.perturbation import batch_options
from vexplain.core.targets import TargetRequest, gather_scores

from ._superpixels import superpixel_options


def feature_options(cells: int = 8) -> dict[str, Option]:
    """``segments``, ``cells``, ``baseline``, ``batch_size``, ``memory_mb`` and ``engine``."""
    return {
        **superpixel_options(cells),
        "baseline": Option(0.0, number(), "the value a removed feature's pixels take (preprocessed units)"),
        **batch_options("perturbed inputs per forward pass"),
        "engine": engine_option("forward", "which engine runs the perturbed batches"),
    }


class CoalitionScorer:
    """y_t of one image for many coalitions: ``run(coalitions (S, F)) -> (S,)`` float64."""

    def __init__(self, scorer: Scorer, image: torch.Tensor, labels: torch.Tensor, baseline: float, target: torch.Tensor, batch_size: int):
        self.scorer, self.image, self.labels = scorer, image, labels
        self.baseline, self.target, self.batch_size = baseline, target, batch_size
        self.features = int(labels.max()) + 1

    def run(self, coalitions: torch.Tensor) -> torch.Tensor:
        coalitions = coalitions.to(self.image.device, self.image.dtype)
        values = []
        for start in range(0, len(coalitions), self.batch_size):
            keep = coalitions[start : start + self.batch_size][:, self.labels].unsqueeze(1)  # (B, 1, H, W)
            batch = self.baseline + (self.image - self.baseline) * keep
            scores = self.scorer.run(batch).to(self.image.device)
            values.append(gather_scores(scores, self.target.expand(len(batch))).double())
        return torch.cat(values)


def prepared(
    adapter: ModelAdapter, inputs: torch.Tensor, targets: TargetRequest, options: dict[str, Any], method: str, per_image: int
) -> tuple[Scorer, torch.Tensor, torch.Tensor, int]:
    """``(scorer, scores, chosen targets, batch_size)``: the engine (``core/engine_choice.py`` for
    "auto", ``per_image`` perturbed inputs per image, about), the clean scores from it and the
    targets they resolve to; the choice's notes are kept on the scorer for ``notes_of``."""
    scorer, batch_size, choice_notes = auto_scorer(adapter, method, inputs, options, per_image * len(inputs), per_image)
    scorer = Scorer(scorer.run, scorer.engine, {**scorer.notes, **choice_notes})
    scores = torch.cat([scorer.run(inputs[start : start + batch_size]).to(inputs.device) for start in range(0, len(inputs), batch_size)])
    return scorer, scores, targets.select(scores), batch_size


def painted(values: list[torch.Tensor], labels: list[torch.Tensor]) -> torch.Tensor:
    """``(N, H, W)``: each pixel takes its feature's value."""
    return torch.stack([value.to(label.device)[label] for value, label in zip(values, labels)]).float()


def notes_of(scorer: Scorer, batch_size: int, labels: list[torch.Tensor]) -> dict[str, Any]:
    return {"batch_size": batch_size, "engine": scorer.engine, **scorer.notes, "features": [int(label.max()) + 1 for label in labels]}
