"""Contrastive excitation backprop (Zhang et al., ECCV 2016 / IJCV 2018), TorchRay's
``contrastive_excitation_backprop``."""
from __future__ import annotations

from typing import Any

import torch

from vexplain.core.adapter import ACTIVATIONS, RULE_GRADIENTS, ModelAdapter
from vexplain.core.explainer import Attribution, Explainer
from vexplain.core.hookspecs import hookimpl
from vexplain.core.targets import TargetRequest

from .excitation_backprop import excitation_attribution, excitation_options


class ContrastiveExcitationBackprop(Explainer):
    """map = max(Σ_c (P⁺ − P⁻), 0) at ``layer``'s output, upsampled bilinearly to the input size:
    P⁺ the target's marginal winning probabilities (``excitation_backprop``), P⁻ the same with the
    last linear/convolution layer's weights negated (the "non-target" dual unit), so what the
    target's evidence shares with all other classes cancels.

    TorchRay subtracts P⁻ at a ``contrast_layer`` and propagates the difference down to the
    saliency layer; every rule below the classifier is linear in P for a fixed forward pass, so
    that equals P⁺ − P⁻ at the saliency layer for any contrast layer between it and the classifier,
    and vexplain takes no ``contrast_layer``. The two backward passes share one forward pass; the
    weights are negated inside the rule, the model is never changed (TorchRay flips them in place).

    Options (defaults): ``layer`` (None: as ``excitation_backprop``, the last outermost module at
    >= 1/8 of the input's height and width), ``batch_size`` inputs per pass (default derived from
    ``memory_mb=1024``). ``layer_maps`` are the clamped maps at the layer's resolution.
    """

    name = "contrastive_excitation_backprop"
    aliases = ("c_eb", "ceb", "contrastive_eb")
    requires = (RULE_GRADIENTS, ACTIVATIONS)
    summary = "max(Σ_c P⁺ − P⁻, 0) at a layer: excitation backprop's winning probabilities minus those with the classifier's weights negated"
    paper = "Zhang, Lin, Brandt, Shen & Sclaroff, Top-down Neural Attention by Excitation Backprop, ECCV 2016 (IJCV 2018)"
    options = excitation_options()

    def attribute(self, adapter: ModelAdapter, inputs: torch.Tensor, targets: TargetRequest, options: dict[str, Any]) -> Attribution:
        return excitation_attribution(adapter, inputs, targets, options, contrastive=True)


@hookimpl
def register_explainers(register) -> None:
    register(ContrastiveExcitationBackprop)
