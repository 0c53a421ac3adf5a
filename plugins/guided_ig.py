"""Guided Integrated Gradients (Kapishnikov et al., CVPR 2021): an adaptive path from the baseline
to the input that moves the features of smallest |gradient| first."""
from __future__ import annotations

import math
from typing import Any

import torch

from vexplain.core.adapter import GRADIENTS, ModelAdapter
from vexplain.core.errors import InvalidInput
from vexplain.core.explainer import Attribution, Explainer
from vexplain.core.hookspecs import hookimpl
from vexplain.core.options import MAX_SAMPLES, Option, integer, number
from vexplain.core.perturbation import batch_options, derived_batch_size
from vexplain.core.targets import TargetRequest, gather_scores

from ._gradient_maps import GRADIENT_MEMORY_FACTOR, channel_map, reduction_options, request_for, resolve_targets

#: relative and absolute tolerance of "the path has reached this step's L1 distance" (PAIR's)
EPSILON = 1e-9


def _along(alpha: float, start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
    """The point ``alpha`` of the way from ``start`` to ``end`` (written as PAIR does, bit for bit)."""
    return start + (end - start) * alpha


def guided_step(
    x: torch.Tensor, grad: torch.Tensor, image: torch.Tensor, baseline: torch.Tensor, step: int, steps: int, fraction: float, max_dist: float
) -> torch.Tensor | None:
    """Step ``step`` (0-based) of the guided path for one image, all tensors float64 ``(C, H, W)``:
    returns the attribution gained, Σ over moves (x_new − x_old) ⊙ grad, and moves ``x`` in place;
    None when rounding keeps the L1 target out of reach (a baseline far off the image's scale).

    With α = (step + 1)/steps, every feature is first pulled up to at least α − max_dist of the way
    from baseline to input; then, until the L1 distance to the input is (1 − α)·‖input − baseline‖₁,
    the ``fraction`` of the not-yet-saturated features with the smallest |grad| (numpy's quantile
    with ``lower`` interpolation) move towards α + max_dist, all of them only as far as needed.
    """
    alpha = (step + 1.0) / steps
    alpha_min, alpha_max = max(alpha - max_dist, 0.0), min(alpha + max_dist, 1.0)
    x_min, x_max = _along(alpha_min, baseline, image), _along(alpha_max, baseline, image)
    total = (image - baseline).abs().sum().item()
    l1_target = total * (1 - (step + 1) / steps)
    span = image - baseline
    gained = torch.zeros_like(x)
    actual, grad = grad, grad.clone()
    for _ in range(x.numel() + 2):  # each full move saturates at least one feature
        x_old = x.clone()
        position = torch.where(span != 0, (x - baseline) / torch.where(span != 0, span, 1.0), alpha_max)
        behind = position < alpha_min
        x[behind] = x_min[behind]
        l1_current = (x - image).abs().sum().item()
        if math.isclose(l1_target, l1_current, rel_tol=EPSILON, abs_tol=EPSILON):
            return gained + (x - x_old) * actual
        grad[x == x_max] = math.inf
        magnitude = grad.abs().reshape(-1)
        rank = int(math.floor(fraction * (magnitude.numel() - 1)))
        threshold = torch.kthvalue(magnitude, rank + 1).values.item()
        chosen = (grad.abs() <= threshold) & (grad != math.inf)
        l1_chosen = ((x - x_max).abs() * chosen).sum().item()
        gamma = (l1_current - l1_target) / l1_chosen if l1_chosen > 0 else math.inf
        if gamma > 1.0:
            x[chosen] = x_max[chosen]
        else:
            x[chosen] = _along(gamma, x, x_max)[chosen]
        gained += (x - x_old) * actual
        if gamma <= 1.0:
            return gained
    return None


def path_error(step: int, steps: int, rows: list[int], problem: str, baseline: float, images: torch.Tensor) -> InvalidInput:
    """The one-line error for a guided path that cannot go on (a baseline far off the inputs' scale)."""
    return InvalidInput(
        f"method 'guided_ig' failed at step {step + 1} of {steps} of its path for input(s) {', '.join(map(str, rows))}: {problem} "
        f"(baseline {baseline:g}, largest |input| {float(images.abs().max()):.3g}); give a baseline on the inputs' scale"
    )


class GuidedIG(Explainer):
    """attributions = Σ_steps Σ_moves (x_new − x_old) ⊙ ∂y_t/∂x(x_step) ``(N, C, H, W)`` along the
    guided path from a constant baseline b to x: at each of ``steps`` steps the gradient is taken
    at the current point, and the features of smallest |gradient| move first (``fraction`` of them
    at a time) until the path's L1 distance to x has shrunk by ‖x − b‖₁/steps, no feature straying
    more than ``max_dist`` (as a fraction of the way) from the straight line. ``max_dist=0`` is
    plain IG on the straight line (right Riemann sum). map = sum over channels (signed); a map
    sums to about y_t(x) − y_t(b).

    Options (defaults, PAIR's): ``steps=200``, ``fraction=0.25``, ``max_dist=0.02``,
    ``baseline=0.0`` (preprocessed units), ``batch_size`` images per forward+backward pass of a
    step (default from ``memory_mb=1024``), ``abs=False``, ``reduce="sum"``. The path is computed
    in float64, as in PAIR saliency's ``GuidedIG``, which it equals within 1e-4 given the same
    gradients. ``exp.options["completeness_gap"]``: Σ attributions − (y_t(x) − y_t(b)) per image.
    """

    name = "guided_ig"
    aliases = ("guided_integrated_gradients",)
    requires = (GRADIENTS,)
    summary = "IG along an adaptive path that first moves the features of smallest |∂y_t/∂x|"
    paper = "Kapishnikov et al., Guided Integrated Gradients: an Adaptive Path Method for Removing Noise, CVPR 2021"
    options = {
        "steps": Option(200, integer(1, MAX_SAMPLES), "steps of the path (one gradient each)"),
        "fraction": Option(0.25, number(minimum=0, maximum=1), "fraction of features, smallest |gradient| first, moved at a time"),
        "max_dist": Option(0.02, number(minimum=0, maximum=1), "largest deviation from the straight line, as a fraction of the way"),
        "baseline": Option(0.0, number(), "the constant baseline image's value (preprocessed units)"),
        **batch_options("images per forward+backward pass of one path step"),
        **reduction_options(abs_default=False, reduce_default="sum"),
    }

    def attribute(self, adapter: ModelAdapter, inputs: torch.Tensor, targets: TargetRequest, options: dict[str, Any]) -> Attribution:
        steps, fraction, max_dist = options["steps"], options["fraction"], options["max_dist"]
        scores, chosen = resolve_targets(adapter, inputs, targets)
        batch_size = derived_batch_size(options, inputs.shape[1:], GRADIENT_MEMORY_FACTOR)
        images = inputs.double()
        baseline = torch.full_like(images[0], options["baseline"])
        points = baseline.expand_as(images).clone()
        total = torch.zeros_like(images)
        moving = [i for i in range(len(inputs)) if (images[i] - baseline).abs().sum() > 0]
        for step in range(steps):
            for start in range(0, len(moving), batch_size):
                rows = torch.tensor(moving[start : start + batch_size], device=inputs.device)
                grads = adapter.gradients(points[rows].to(inputs.dtype), request_for(chosen[rows]), batch_size=len(rows)).gradients
                if not bool(torch.isfinite(grads).all()):
                    raise path_error(step, steps, rows.tolist(), "the gradients are NaN or infinite", options["baseline"], images)
                for row, grad in zip(rows.tolist(), grads.to(inputs.device).double()):
                    gained = guided_step(points[row], grad, images[row], baseline, step, steps, fraction, max_dist)
                    if gained is None:
                        raise path_error(step, steps, [row], "rounding kept its L1 target out of reach", options["baseline"], images)
                    total[row] += gained
        values = total.to(inputs.dtype)
        start_scores = adapter.forward(baseline[None].to(inputs.dtype)).to(inputs.device).expand(len(inputs), -1)
        rise = gather_scores(scores, chosen) - gather_scores(start_scores, chosen)
        gap = total.sum(dim=(1, 2, 3)) - rise.double()
        notes = {"batch_size": batch_size, "completeness_gap": gap.tolist()}
        return Attribution(maps=channel_map(values, options), scores=scores, targets=chosen, attributions=values, notes=notes)


@hookimpl
def register_explainers(register) -> None:
    register(GuidedIG)
