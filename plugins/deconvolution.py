"""Deconvolution (Zeiler & Fergus, 2014), as a modified backward pass."""
from __future__ import annotations

from typing import Any

import torch

from vexplain.core.adapter import RULE_GRADIENTS, ModelAdapter
from vexplain.core.explainer import Attribution, Explainer
from vexplain.core.hookspecs import hookimpl
from vexplain.core.targets import TargetRequest

from ._gradient_maps import channel_map, reduction_options


class Deconvolution(Explainer):
    """attributions = the backward pass of y_t with every ReLU's backward replaced by
    ``max(grad, 0)`` — the deconvnet's rectified unpooling path, ignoring which units were active
    in the forward pass — ``(N, C, H, W)``; map = max over channels of |attributions|.

    Options (defaults): ``abs=True``, ``reduce="max"``. The attributions equal Captum's
    ``Deconvolution``; functional ReLUs are covered too (see ``adapters/torch_rules``).
    """

    name = "deconvolution"
    aliases = ('deconvnet',)
    requires = (RULE_GRADIENTS,)
    summary = "max over channels of |backward pass of y_t with each ReLU's backward = max(grad, 0)|: the deconvnet's reconstruction"
    paper = "Zeiler & Fergus, Visualizing and Understanding Convolutional Networks, ECCV 2014"
    options = reduction_options(abs_default=True, reduce_default="max")

    def attribute(self, adapter: ModelAdapter, inputs: torch.Tensor, targets: TargetRequest, options: dict[str, Any]) -> Attribution:
        result = adapter.rule_gradients(inputs, targets, "deconvolution")
        values = result.gradients.to(inputs.device)
        return Attribution(maps=channel_map(values, options), scores=result.scores, targets=result.targets, attributions=values)


@hookimpl
def register_explainers(register) -> None:
    register(Deconvolution)
