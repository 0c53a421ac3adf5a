"""Guided backpropagation (Springenberg et al., 2015)."""
from __future__ import annotations

from typing import Any

import torch

from vexplain.core.adapter import GUIDED_GRADIENTS, ModelAdapter
from vexplain.core.explainer import Attribution, Explainer
from vexplain.core.hookspecs import hookimpl
from vexplain.core.targets import TargetRequest

from ._gradient_maps import channel_map, reduction_options


class GuidedBackprop(Explainer):
    """attributions = the guided gradient ``(N, C, H, W)``: ∂y_t/∂x with every ReLU's backward
    pass also zeroing negative gradients (the adapter's ``guided_gradients``); map = max over
    channels of |attributions|, as for saliency.

    Options (defaults): ``abs=True``, ``reduce="max"``. The attributions equal Captum's
    ``GuidedBackprop``. Known to be nearly insensitive to the classifier's weights (Adebayo et
    al., 2018): it reconstructs image edges more than it explains the class.
    """

    name = "guided_backprop"
    aliases = ('guided_backpropagation', 'gbp')
    requires = (GUIDED_GRADIENTS,)
    summary = "max over channels of |guided ∂y_t/∂x|: the gradient with negative gradients stopped at every ReLU"
    paper = "Springenberg et al., Striving for Simplicity: The All Convolutional Net, ICLR Workshop 2015"
    options = reduction_options(abs_default=True, reduce_default="max")

    def attribute(self, adapter: ModelAdapter, inputs: torch.Tensor, targets: TargetRequest, options: dict[str, Any]) -> Attribution:
        result = adapter.guided_gradients(inputs, targets)
        values = result.gradients.to(inputs.device)
        return Attribution(maps=channel_map(values, options), scores=result.scores, targets=result.targets, attributions=values)


@hookimpl
def register_explainers(register) -> None:
    register(GuidedBackprop)
