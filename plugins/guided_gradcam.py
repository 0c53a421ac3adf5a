"""Guided Grad-CAM (Selvaraju et al., 2017): guided backpropagation times upsampled Grad-CAM."""
from __future__ import annotations

from typing import Any

import torch

from vexplain.core.adapter import ACTIVATION_GRADIENTS, GUIDED_GRADIENTS, ModelAdapter
from vexplain.core.errors import InvalidOption
from vexplain.core.explainer import Attribution, Explainer
from vexplain.core.hookspecs import hookimpl
from vexplain.core.options import Option, choice, optional, resolve_options, text
from vexplain.core.postprocess import upsample
from vexplain.core.targets import TargetRequest

from ._gradient_maps import channel_map, reduction_options, request_for


class GuidedGradCam(Explainer):
    """attributions = G ⊙ up(L) ``(N, C, H, W)``: the guided gradient G (``guided_backprop``)
    times the Grad-CAM layer map L (the registered ``gradcam`` method, at ``layer``) upsampled to
    the input size; map = max over channels of |attributions| = guided_backprop's map × up(L),
    since L ≥ 0. ``layer_maps`` are Grad-CAM's.

    Options (defaults): ``layer=None`` (Grad-CAM's default layer), ``interpolate="bilinear"``
    (``nearest`` is Captum's default), ``abs=True``, ``reduce="max"``. The attributions equal
    Captum's ``GuidedGradCam`` with the same ``interpolate_mode``.
    """

    name = "guided_gradcam"
    requires = (ACTIVATION_GRADIENTS, GUIDED_GRADIENTS)
    summary = "guided backpropagation × Grad-CAM upsampled to the input: class-specific and fine-grained"
    paper = "Selvaraju et al., Grad-CAM: Visual Explanations from Deep Networks via Gradient-based Localization, ICCV 2017"
    options = {
        "layer": Option(None, optional(text()), "Grad-CAM's layer (see `vexplain layers MODEL`); default the last feature map before global pooling"),
        "interpolate": Option("bilinear", choice("bilinear", "nearest"), "how Grad-CAM's layer map is upsampled"),
        **reduction_options(abs_default=True, reduce_default="max"),
    }

    def attribute(self, adapter: ModelAdapter, inputs: torch.Tensor, targets: TargetRequest, options: dict[str, Any]) -> Attribution:
        from vexplain.core.registry import REGISTRY

        gradcam = REGISTRY.explainer("gradcam").obj
        cam_options = resolve_options(gradcam.name, gradcam.options, {"layer": options["layer"]})
        if isinstance(cam_options["layer"], tuple):
            raise InvalidOption(f"guided_gradcam takes one layer, got '{options['layer']}'; run gradcam for several layers")
        cam = gradcam().attribute(adapter, inputs, targets, cam_options)
        chosen = cam.targets.to(inputs.device)
        guided = adapter.guided_gradients(inputs, request_for(chosen)).gradients.to(inputs.device)
        upsampled = upsample(cam.layer_maps.to(inputs.device), tuple(inputs.shape[2:]), options["interpolate"])
        values = guided * upsampled.unsqueeze(1)
        return Attribution(
            maps=channel_map(values, options), scores=cam.scores, targets=chosen, attributions=values, layer_maps=cam.layer_maps, notes=cam.notes
        )


@hookimpl
def register_explainers(register) -> None:
    register(GuidedGradCam)
