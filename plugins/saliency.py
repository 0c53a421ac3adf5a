"""Saliency maps (Simonyan, Vedaldi & Zisserman, 2014)."""
from __future__ import annotations

from typing import Any

import torch

from vexplain.core.adapter import GRADIENTS, ModelAdapter
from vexplain.core.explainer import Attribution, Explainer
from vexplain.core.hookspecs import hookimpl
from vexplain.core.targets import TargetRequest

from ._gradient_maps import channel_map, reduction_options


class Saliency(Explainer):
    """map = reduce over channels of |∂y_t/∂x| (``abs=True``, ``reduce="max"`` by default).

    ``attributions`` hold the per-channel values before the reduction (|∂y_t/∂x|, or the signed
    gradient with ``abs=False``). Agrees with Captum ``Saliency(abs=True)`` followed by a max over C.
    """

    name = "saliency"
    aliases = ('vanilla_gradient',)
    requires = (GRADIENTS,)
    summary = "max over channels of |∂y_t/∂x|: how strongly each pixel's change moves the class score"
    paper = "Simonyan, Vedaldi & Zisserman, Deep Inside Convolutional Networks, ICLR Workshop 2014"
    options = reduction_options(abs_default=True, reduce_default="max")

    def attribute(self, adapter: ModelAdapter, inputs: torch.Tensor, targets: TargetRequest, options: dict[str, Any]) -> Attribution:
        result = adapter.gradients(inputs, targets)
        values = result.gradients.abs() if options["abs"] else result.gradients
        maps = channel_map(values, {**options, "abs": False})  # |·| already taken: the attributions keep it
        return Attribution(maps=maps, scores=result.scores, targets=result.targets, attributions=values)


@hookimpl
def register_explainers(register) -> None:
    register(Saliency)
