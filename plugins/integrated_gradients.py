"""Integrated Gradients (Sundararajan, Taly & Yan, 2017)."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from vexplain.core.adapter import GRADIENTS, ModelAdapter
from vexplain.core.errors import InvalidOption
from vexplain.core.explainer import Attribution, Explainer
from vexplain.core.budget import check_fits, memory_budget_mb
from vexplain.core.hookspecs import hookimpl
from vexplain.core.options import Option, choice, integer, number
from vexplain.core.perturbation import batch_options, derived_batch_size
from vexplain.core.targets import TargetRequest, gather_scores

from ._gradient_maps import GRADIENT_MEMORY_FACTOR, channel_map, pair_chunks, reduction_options, request_for, resolve_targets

#: the most Gauss-Legendre nodes computed: 4096 take about 0.4 s (scipy, 2 CPU cores), the time
#: grows as steps², and a smooth path integral has converged long before (Captum's default is 50)
GAUSS_LEGENDRE_MAX_STEPS = 4096
#: what one path node holds for the whole call: α and w in float64 (numpy), α in float32 and w in
#: float64 (torch)
BYTES_PER_STEP = 28

RULES = ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle")


def quadrature(rule: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """``(alphas, weights)`` of the path integral ∫₀¹ g(α) dα ≈ Σ_k w_k g(α_k), as Captum builds them.

    ``gausslegendre``: Gauss-Legendre nodes and weights mapped to [0, 1] (scipy's
    ``roots_legendre``, O(steps²), equal to numpy's ``leggauss``, which Captum uses, within 1e-13
    but about 35× faster at 1000 nodes; at most ``GAUSS_LEGENDRE_MAX_STEPS``). Riemann rules: weights
    1/steps at α = k/steps (``right``, k = 1..steps), (k−1)/steps (``left``), (k−½)/steps
    (``middle``); ``trapezoid`` puts α on linspace(0, 1, steps) and halves the two end weights of
    1/steps — Captum's choice, whose weights sum to 1 − 1/steps, not 1.
    """
    if rule == "gausslegendre":
        if steps > GAUSS_LEGENDRE_MAX_STEPS:
            raise InvalidOption(
                f"option 'steps' of method 'integrated_gradients' is {steps}; rule 'gausslegendre' takes at most "
                f"{GAUSS_LEGENDRE_MAX_STEPS} (its nodes take seconds beyond that); use a riemann rule for more steps"
            )
        from scipy.special import roots_legendre

        nodes, weights = roots_legendre(steps)
        return 0.5 * (1.0 + nodes), 0.5 * weights
    if steps < 2:
        raise InvalidOption(f"rule '{rule}' needs steps >= 2; got {steps} (gausslegendre takes 1)")
    weights = np.full(steps, 1.0 / steps)
    if rule == "riemann_trapezoid":
        weights[[0, -1]] /= 2
        return np.linspace(0.0, 1.0, steps), weights
    start = {"riemann_left": 0.0, "riemann_right": 1.0 / steps, "riemann_middle": 0.5 / steps}[rule]
    return np.linspace(start, start + 1.0 - 1.0 / steps, steps), weights


class IntegratedGradients(Explainer):
    """attributions = (x − b) ⊙ ∫₀¹ ∂y_t/∂x (b + α (x − b)) dα ``(N, C, H, W)`` for a constant
    baseline image b; map = sum over channels (signed), so a map sums to the image's total
    attribution, which completeness says is ≈ y_t(x) − y_t(b).

    Options (defaults): ``steps=50`` (at most 4096 with ``gausslegendre``; any rule's nodes must
    fit ``memory_mb``, 28 bytes each), ``baseline=0.0`` (in preprocessed units: the data mean),
    ``rule="gausslegendre"`` (or ``riemann_trapezoid|left|right|middle``, Captum's names and
    nodes), ``batch_size`` path points per forward+backward pass (default derived from
    ``memory_mb=1024``, at most 256; it overrides the adapter's own batch size), ``abs=False``,
    ``reduce="sum"``.
    ``exp.options["completeness_gap"]`` holds, per image, Σ attributions − (y_t(x) − y_t(b)):
    Captum's convergence delta. Equals Captum's ``IntegratedGradients`` with the same rule.
    """

    name = "integrated_gradients"
    aliases = ('ig',)
    requires = (GRADIENTS,)
    summary = "Σ_c (x − b) ⊙ ∫₀¹ ∂y_t/∂x(b + α(x − b)) dα: gradients integrated along the path from a baseline"
    paper = "Sundararajan, Taly & Yan, Axiomatic Attribution for Deep Networks, ICML 2017"
    options = {
        "steps": Option(50, integer(1), "points on the path from the baseline to the input"),
        "baseline": Option(0.0, number(), "the constant baseline image's value (preprocessed units)"),
        "rule": Option("gausslegendre", choice(*RULES), "quadrature rule, named as in Captum"),
        **batch_options("path points per forward+backward pass"),
        **reduction_options(abs_default=False, reduce_default="sum"),
    }

    def attribute(self, adapter: ModelAdapter, inputs: torch.Tensor, targets: TargetRequest, options: dict[str, Any]) -> Attribution:
        budget = memory_budget_mb(self.name, options, inputs.device)
        check_fits(self.name, "steps", options["steps"], BYTES_PER_STEP, budget, "path nodes")
        alphas, weights = quadrature(options["rule"], options["steps"])
        scores, chosen = resolve_targets(adapter, inputs, targets)
        baseline = torch.full_like(inputs[:1], options["baseline"])
        batch_size = derived_batch_size(options, inputs.shape[1:], GRADIENT_MEMORY_FACTOR)
        path = integrate(adapter, inputs, baseline, chosen, alphas, weights, batch_size)
        values = (inputs - baseline) * path
        baseline_scores = adapter.forward(baseline).to(inputs.device).expand(len(inputs), -1)
        rise = gather_scores(scores, chosen) - gather_scores(baseline_scores, chosen)
        gap = values.double().sum(dim=(1, 2, 3)) - rise.double()
        notes = {"batch_size": batch_size, "completeness_gap": gap.tolist()}
        return Attribution(maps=channel_map(values, options), scores=scores, targets=chosen, attributions=values, notes=notes)


def integrate(
    adapter: ModelAdapter,
    inputs: torch.Tensor,
    baseline: torch.Tensor,
    chosen: torch.Tensor,
    alphas: np.ndarray,
    weights: np.ndarray,
    batch_size: int,
) -> torch.Tensor:
    """Σ_k w_k ∂y_t/∂x (b + α_k (x − b)) per image ``(N, C, H, W)``: path points of all images in
    batches of ``batch_size``, accumulated in float64 so the batching cannot change the sum."""
    device = inputs.device
    alpha = torch.tensor(alphas, dtype=inputs.dtype, device=device)
    weight = torch.tensor(weights, dtype=torch.float64, device=device)
    total = torch.zeros(inputs.shape, dtype=torch.float64, device=device)
    for image, step in pair_chunks(len(inputs), len(alphas), batch_size, device):
        points = baseline + alpha[step].view(-1, 1, 1, 1) * (inputs[image] - baseline)
        gradients = adapter.gradients(points, request_for(chosen[image]), batch_size=len(points)).gradients.to(device)
        total.index_add_(0, image, gradients.double() * weight[step].view(-1, 1, 1, 1))
    return total.to(inputs.dtype)


@hookimpl
def register_explainers(register) -> None:
    register(IntegratedGradients)
