"""Deletion and insertion (Petsiuk, Das & Saenko, RISE, BMVC 2018)."""
from __future__ import annotations

from typing import Any, ClassVar

import torch

from vexplain.core.adapter import FORWARD
from vexplain.core.engine_choice import engine_option
from vexplain.core.hookspecs import hookimpl
from vexplain.core.metric import EvaluationCase, Metric, MetricResult
from vexplain.core.metric_tools import (
    SUBSTRATES,
    relevance_ranks,
    substrate,
    target_probabilities,
    trapezoid_auc,
)
from vexplain.core.errors import InvalidOption
from vexplain.core.options import Option, choice, integer, number
from vexplain.core.perturbation import batch_options, derived_batch_size

PAPER = "Petsiuk, Das & Saenko, RISE: Randomized Input Sampling for Explanation of Black-box Models, BMVC 2018"


def _options(default_substrate: str) -> dict[str, Option]:
    return {
        "steps": Option(100, integer(1), "number of steps; step k changes the floor(k*H*W/steps) most relevant pixels; at most H*W"),
        "substrate": Option(default_substrate, choice(*SUBSTRATES), "what removed pixels become: zeros, mean or blur"),
        "blur_sigma": Option(5.0, number(above=0), "std in pixels of the Gaussian blur substrate; at most max(H, W)"),
        **batch_options("perturbed images per forward pass"),
        "engine": engine_option("forward", "which engine runs the perturbed batches"),
    }


class _PixelCurve(Metric):
    """Pixels are changed in order of decreasing map value (ties: row-major order), in ``steps``
    equal steps; at each step the target's score is recorded: the softmax probability of the
    explained class for class targets, a target object's own score (``vx.targets``) otherwise. The
    curve has ``steps + 1`` points at x = fraction of pixels changed (0 .. 1); its area by the
    trapezoid rule is the ``auc`` value. Ranges: ``steps`` at most H·W (one pixel per step; more
    would repeat points), ``blur_sigma`` at most max(H, W) (a wider blur is all but the image's
    mean: use ``substrate='mean'``), both refused before any work."""

    requires = (FORWARD,)
    headline = "auc"
    paper = PAPER
    inserting: ClassVar[bool] = False

    def evaluate(self, case: EvaluationCase, options: dict[str, Any]) -> MetricResult:
        inputs = case.inputs
        n, _, height, width = inputs.shape
        pixels = height * width
        steps = options["steps"]
        device = inputs.device
        if steps > pixels:
            raise InvalidOption(f"option 'steps' of metric '{self.name}' is {steps}, but the {height}x{width} images have {pixels} pixels; give at most {pixels} (one pixel per step)")
        if options["substrate"] == "blur" and options["blur_sigma"] > max(height, width):
            raise InvalidOption(
                f"option 'blur_sigma' of metric '{self.name}' is {options['blur_sigma']:g}, wider than the {height}x{width} images; "
                f"give at most {max(height, width)}, or substrate='mean'"
            )
        ranks = relevance_ranks(case.maps.to(device))
        counts = torch.tensor([k * pixels // steps for k in range(steps + 1)], device=device)
        background = substrate(inputs, options["substrate"], options["blur_sigma"])
        # deletion: changed pixels show the substrate; insertion: changed pixels show the image
        changed_source, kept_source = (inputs, background) if self.inserting else (background, inputs)
        points = steps + 1
        batch_size = derived_batch_size(options, inputs.shape[1:])
        scorer = case.adapter.scorer(options["engine"], sample=inputs[:1])

        def build(start: int, stop: int, out: torch.Tensor) -> torch.Tensor:
            rows = torch.arange(start, stop, device=device)
            images, step = rows // points, rows % points
            changed = (ranks[images] < counts[step][:, None]).view(-1, 1, height, width)
            return torch.where(changed, changed_source[images], kept_source[images], out=out)

        row_targets = case.targets.to(device).repeat_interleave(points)
        probabilities = target_probabilities(
            scorer, n * points, build, row_targets, batch_size, tuple(inputs.shape[1:]), device, self.name, case.class_targets
        ).view(n, points)
        x = counts.to(torch.float64).cpu() / pixels
        return MetricResult(
            values={"auc": trapezoid_auc(probabilities, x).numpy()},
            curves={self.name: probabilities.numpy()},
            curve_x={self.name: x.tolist()},
            notes={"batch_size": batch_size, "engine": scorer.engine, **scorer.notes},
        )


class Deletion(_PixelCurve):
    __doc__ = (
        "Deletion: the most relevant pixels are replaced by the substrate first; a faithful map makes "
        "the class probability fall fast, so lower AUC is better.\n\n"
        + _PixelCurve.__doc__
        + "\n\nDefaults: steps=100, substrate='zeros', blur_sigma=5.0, batch_size from memory_mb=1024, engine='auto'."
    )
    name = "deletion"
    summary = "area under the class probability as the most relevant pixels are deleted first (lower is better)"
    higher_is_better = False
    options = _options("zeros")


class Insertion(_PixelCurve):
    __doc__ = (
        "Insertion: starting from the substrate (a blurred image by default), the most relevant pixels "
        "of the image are put back first; a faithful map makes the probability rise fast, so higher "
        "AUC is better.\n\n"
        + _PixelCurve.__doc__
        + "\n\nDefaults: steps=100, substrate='blur', blur_sigma=5.0, batch_size from memory_mb=1024, engine='auto'."
    )
    name = "insertion"
    summary = "area under the class probability as the most relevant pixels are inserted first into a blurred image (higher is better)"
    higher_is_better = True
    inserting = True
    options = _options("blur")


@hookimpl
def register_metrics(register) -> None:
    register(Deletion)
    register(Insertion)
