"""Blur IG (Xu, Venugopalan & Sundararajan, CVPR 2020): integrated gradients along a path of
Gaussian blurs, from the fully blurred image to the image itself."""
from __future__ import annotations

import math
from typing import Any

import torch

from vexplain.core.adapter import GRADIENTS, ModelAdapter
from vexplain.core.explainer import Attribution, Explainer
from vexplain.core.hookspecs import hookimpl
from vexplain.core.options import MAX_SAMPLES, Option, boolean, integer, number
from vexplain.core.perturbation import batch_options, derived_batch_size
from vexplain.core.targets import TargetRequest, gather_scores

from ._gaussian import MAX_SIGMA, blurred
from ._gradient_maps import GRADIENT_MEMORY_FACTOR, channel_map, pair_chunks, reduction_options, request_for, resolve_targets


def blur_sigmas(steps: int, max_sigma: float, sqrt: bool) -> list[float]:
    """σ_0..σ_steps: i·σ_max/steps, or √(i·σ_max/steps) with ``sqrt`` (PAIR's spacing)."""
    linear = [i * max_sigma / steps for i in range(steps + 1)]
    return [math.sqrt(s) for s in linear] if sqrt else linear


class BlurIG(Explainer):
    """attributions = −Σ_{i<S} (σ_{i+1} − σ_i) · ∂x_σ/∂σ|σ_i ⊙ ∂y_t/∂x (x_{σ_i}) ``(N, C, H, W)``, with
    x_σ the image blurred by a Gaussian of std σ over its spatial axes (zero padding, kernel cut at
    4σ: scipy's ``gaussian_filter(mode="constant")``) and ∂x_σ/∂σ the forward difference
    (x_{σ+grad_step} − x_σ)/grad_step; σ_i = i·max_sigma/S (√ of that with ``sqrt``). The path runs
    from the fully blurred image (σ_max) to the image (σ = 0), so a map sums to about
    y_t(x) − y_t(x_{σ_max}). map = sum over channels (signed).

    Options (defaults, PAIR's): ``steps=100`` (S), ``max_sigma=50.0``, ``grad_step=0.01``,
    ``sqrt=False``, ``batch_size`` path points per forward+backward pass (default derived from
    ``memory_mb=1024``), ``abs=False``, ``reduce="sum"``. ``exp.options["completeness_gap"]``
    holds, per image, Σ attributions − (y_t(x) − y_t(x_{σ_max})).
    Equals PAIR saliency's ``BlurIG.GetMask`` within 1e-4 given the same gradients (PAIR weights a
    whole batch of path points by the last point's Δσ; with ``sqrt=True`` and ``batch_size`` > 1
    its result therefore depends on its batch size, here each point keeps its own Δσ).
    """

    name = "blur_ig"
    aliases = ("blur_integrated_gradients", "blurig")
    requires = (GRADIENTS,)
    summary = "−Σ Δσ ∂x_σ/∂σ ⊙ ∂y_t/∂x(x_σ): gradients integrated along a Gaussian-blur path from σ_max to the image"
    paper = "Xu, Venugopalan & Sundararajan, Attribution in Scale and Space, CVPR 2020"
    options = {
        "steps": Option(100, integer(1, MAX_SAMPLES), "blur levels on the path (S)"),
        "max_sigma": Option(50.0, number(above=0, maximum=MAX_SIGMA), "std (pixels) of the most blurred image, the path's start"),
        "grad_step": Option(0.01, number(above=0, maximum=MAX_SIGMA), "σ step of the forward difference ∂x_σ/∂σ"),
        "sqrt": Option(False, boolean(), "space σ as √(i·max_sigma/steps) instead of linearly"),
        **batch_options("path points per forward+backward pass"),
        **reduction_options(abs_default=False, reduce_default="sum"),
    }

    def attribute(self, adapter: ModelAdapter, inputs: torch.Tensor, targets: TargetRequest, options: dict[str, Any]) -> Attribution:
        steps, grad_step = options["steps"], options["grad_step"]
        sigmas = blur_sigmas(steps, options["max_sigma"], options["sqrt"])
        scores, chosen = resolve_targets(adapter, inputs, targets)
        batch_size = derived_batch_size(options, inputs.shape[1:], GRADIENT_MEMORY_FACTOR)
        total = torch.zeros(inputs.shape, dtype=torch.float64, device=inputs.device)
        for image, step in pair_chunks(len(inputs), steps, batch_size, inputs.device):
            at = [sigmas[s] for s in step.tolist()]
            points = blurred(inputs[image], at)
            slope = (blurred(inputs[image], [s + grad_step for s in at]) - points) / grad_step
            gradients = adapter.gradients(points.to(inputs.dtype), request_for(chosen[image]), batch_size=len(points)).gradients
            delta = torch.tensor([sigmas[s + 1] - sigmas[s] for s in step.tolist()], dtype=torch.float64, device=inputs.device)
            total.index_add_(0, image, slope * gradients.to(inputs.device).double() * delta.view(-1, 1, 1, 1))
        values = (-total).to(inputs.dtype)
        start = blurred(inputs, [sigmas[-1]] * len(inputs)).to(inputs.dtype)
        rise = gather_scores(scores, chosen) - gather_scores(adapter.forward(start).to(inputs.device), chosen)
        gap = (-total).sum(dim=(1, 2, 3)) - rise.double()
        notes = {"batch_size": batch_size, "completeness_gap": gap.tolist()}
        return Attribution(maps=channel_map(values, options), scores=scores, targets=chosen, attributions=values, notes=notes)


@hookimpl
def register_explainers(register) -> None:
    register(BlurIG)
