"""Excitation backprop (Zhang et al., ECCV 2016 / IJCV 2018), TorchRay's ``excitation_backprop``."""
from __future__ import annotations

from typing import Any

import torch

from vexplain.core.adapter import ACTIVATIONS, RULE_GRADIENTS, ModelAdapter
from vexplain.core.errors import InvalidOption
from vexplain.core.explainer import Attribution, Explainer
from vexplain.core.hookspecs import hookimpl
from vexplain.core.options import Option, optional, text
from vexplain.core.perturbation import batch_options, derived_batch_size
from vexplain.core.postprocess import upsample
from vexplain.core.propagation import Propagation
from vexplain.core.targets import TargetRequest

from ._gradient_maps import GRADIENT_MEMORY_FACTOR

#: the default layer keeps at least 1/DEFAULT_STRIDE of the input's height and width
DEFAULT_STRIDE = 8


def default_excitation_layer(adapter: ModelAdapter, sample: torch.Tensor) -> str:
    """The last outermost module whose output is a feature map of at least 1/8 of the input's height
    and width (ResNets: ``layer2``; VGG16: ``features.22``, conv4_3's ReLU), so the map keeps
    detail, as the paper and TorchRay read it at an intermediate layer; the default CAM layer when
    no module qualifies."""
    height, width = sample.shape[-2:]
    shapes = adapter.layer_shapes(sample[:1])
    wide = [name for name, shape in shapes.items() if shape[-2] * DEFAULT_STRIDE >= height and shape[-1] * DEFAULT_STRIDE >= width]
    outermost = [name for name in wide if not any(name.startswith(other + ".") for other in wide if other != name)]
    return outermost[-1] if outermost else adapter.default_cam_layer(sample[:1])


def excitation_attribution(adapter: ModelAdapter, inputs: torch.Tensor, targets: TargetRequest, options: dict[str, Any], contrastive: bool) -> Attribution:
    """The (contrastive) excitation map at ``options["layer"]``: Σ over channels of the marginal
    winning probabilities there, upsampled bilinearly to the input size."""
    layer = options["layer"]
    layer = default_excitation_layer(adapter, inputs) if layer is None else adapter.check_layer(layer)
    spec = Propagation(conv="excitation", linear="excitation", merge_batchnorm=False, layer=layer, contrastive=contrastive, seed="one")
    batch_size = derived_batch_size(options, inputs.shape[1:], GRADIENT_MEMORY_FACTOR)
    result = adapter.rule_gradients(inputs, targets, spec, batch_size=batch_size)
    probabilities = result.gradients.to(inputs.device).float()
    if probabilities.dim() != 4:
        raise InvalidOption(f"layer '{layer}' outputs shape {tuple(probabilities.shape)}; excitation backprop needs a (N, C, h, w) feature map layer (see `vexplain layers MODEL`)")
    layer_maps = probabilities.sum(dim=1)
    if contrastive:
        layer_maps = layer_maps.clamp(min=0)
    maps = upsample(layer_maps, tuple(inputs.shape[2:]))
    notes = {"layer": layer, "batch_size": batch_size}
    return Attribution(maps=maps, scores=result.scores, targets=result.targets, layer_maps=layer_maps, notes=notes)


def excitation_options() -> dict[str, Option]:
    return {
        "layer": Option(None, optional(text()), "the layer whose output the map is read at (see `vexplain layers MODEL`); default the last at >= 1/8 input resolution"),
        **batch_options("inputs per forward+backward pass"),
    }


class ExcitationBackprop(Explainer):
    """map = Σ_c P(a_c) at ``layer``'s output, upsampled bilinearly to the input size: the marginal
    winning probability of each unit a when the target unit wins with probability 1. Each linear
    or convolution layer passes P from its outputs i to its inputs j in proportion to their
    excitatory contributions, P_j = Σ_i x_j w⁺_ij P_i / (Σ_k x_k w⁺_ik + 1e-20), w⁺ = max(w, 0), the
    bias ignored, the activations x acting as the prior; ReLU and BatchNorm pass P unchanged,
    average pooling and residual sums split it in proportion to their inputs, max pooling gives it
    to the winner (TorchRay's rules, with its ResNet skip-sum patch built in).

    Options (defaults): ``layer`` (None: the last outermost module whose output keeps at least 1/8
    of the input's height and width — ResNets ``layer2``, VGG16 ``features.22``; TorchRay's
    examples use VGG16's ``features.9``), ``batch_size`` inputs per pass (default derived from
    ``memory_mb=1024``). ``layer_maps`` are the maps at the layer's resolution; the map is not
    clamped (TorchRay's ``gradient_to_excitation_backprop_saliency`` sums over channels only).
    """

    name = "excitation_backprop"
    aliases = ("eb", "excitation_backpropagation")
    requires = (RULE_GRADIENTS, ACTIVATIONS)
    summary = "Σ_c marginal winning probability at a layer: the target's probability 1 passed down in proportion to x ⊙ w⁺ (bias ignored)"
    paper = "Zhang, Lin, Brandt, Shen & Sclaroff, Top-down Neural Attention by Excitation Backprop, ECCV 2016 (IJCV 2018)"
    options = excitation_options()

    def attribute(self, adapter: ModelAdapter, inputs: torch.Tensor, targets: TargetRequest, options: dict[str, Any]) -> Attribution:
        return excitation_attribution(adapter, inputs, targets, options, contrastive=False)


@hookimpl
def register_explainers(register) -> None:
    register(ExcitationBackprop)
