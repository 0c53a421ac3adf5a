"""The class-activation-map family: one base, each variant overrides the channel-weights step.

map_layer = post(Σ_k w_k A_k) at a layer A (default: the last 4-D activation feeding global
pooling); the map is that upsampled bilinearly (align_corners=False) to the input size. Variants
set ``uses_gradients`` and implement ``channel_weights``; ``relu_output`` applies ReLU to the sum.
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch

from vexplain.core.adapter import ModelAdapter
from vexplain.core.explainer import Attribution, Explainer
from vexplain.core.options import Option, optional, text
from vexplain.core.postprocess import relu, upsample
from vexplain.core.targets import TargetRequest

LAYER_OPTION = Option(None, optional(text()), "layer name (see `vexplain layers MODEL`); default the last feature map before global pooling")


class CamExplainer(Explainer):
    """Base of CAM-style methods. Subclasses implement ``channel_weights``."""

    uses_gradients: ClassVar[bool] = False
    relu_output: ClassVar[bool] = False
    options = {"layer": LAYER_OPTION}

    def channel_weights(
        self,
        adapter: ModelAdapter,
        activations: torch.Tensor,
        gradients: torch.Tensor | None,
        targets: torch.Tensor,
        options: dict[str, Any],
    ) -> torch.Tensor:
        """``(N, C)`` weights of the layer's channels for each input's target."""
        raise NotImplementedError

    def attribute(self, adapter: ModelAdapter, inputs: torch.Tensor, targets: TargetRequest, options: dict[str, Any]) -> Attribution:
        layer = options["layer"] or adapter.default_cam_layer(inputs[:1])
        if options["layer"]:
            adapter.check_layer(layer)
        if self.uses_gradients:
            result = adapter.activation_gradients(inputs, layer, targets)
            chosen = result.targets
        else:
            result = adapter.activations(inputs, layer)
            chosen = targets.select(result.scores)
        activations = result.activations.to(inputs.device)
        if activations.dim() != 4:
            from vexplain.core.errors import InvalidOption

            raise InvalidOption(f"layer '{layer}' outputs shape {tuple(activations.shape)}; CAM methods need a 4-D (N, C, h, w) feature map")
        weights = self.channel_weights(adapter, activations, result.gradients, chosen.to(inputs.device), options)
        layer_maps = torch.einsum("nc,nchw->nhw", weights, activations)
        if self.relu_output:
            layer_maps = relu(layer_maps)
        maps = upsample(layer_maps, tuple(inputs.shape[2:]))
        return Attribution(maps=maps, scores=result.scores, targets=chosen, layer_maps=layer_maps, notes={"layer": layer})
