"""Input × gradient (Shrikumar et al., 2016)."""
from __future__ import annotations

from typing import Any

import torch

from vexplain.core.adapter import GRADIENTS, ModelAdapter
from vexplain.core.explainer import Attribution, Explainer
from vexplain.core.hookspecs import hookimpl
from vexplain.core.targets import TargetRequest

from ._gradient_maps import channel_map, reduction_options


class InputXGradient(Explainer):
    """attributions = x ⊙ ∂y_t/∂x ``(N, C, H, W)``; map = sum over channels (signed).

    Options (defaults): ``abs=False``, ``reduce="sum"``. The attributions equal Captum's
    ``InputXGradient``; for a linear model with zero bias the map sums to the class score.
    """

    name = "input_x_gradient"
    aliases = ('gradient_x_input',)
    requires = (GRADIENTS,)
    summary = "Σ_c x ⊙ ∂y_t/∂x: each pixel's value times the gradient, summed over channels"
    paper = "Shrikumar et al., Not Just a Black Box: Learning Important Features Through Propagating Activation Differences, arXiv 2016"
    options = reduction_options(abs_default=False, reduce_default="sum")

    def attribute(self, adapter: ModelAdapter, inputs: torch.Tensor, targets: TargetRequest, options: dict[str, Any]) -> Attribution:
        result = adapter.gradients(inputs, targets)
        values = inputs * result.gradients.to(inputs.device)
        return Attribution(maps=channel_map(values, options), scores=result.scores, targets=result.targets, attributions=values)


@hookimpl
def register_explainers(register) -> None:
    register(InputXGradient)
