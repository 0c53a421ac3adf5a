"""Grad-CAM (Selvaraju et al., 2017)."""
from __future__ import annotations

import torch

from vexplain.core.adapter import ACTIVATION_GRADIENTS
from vexplain.core.hookspecs import hookimpl

from .cam_base import CamExplainer, CamStep


class GradCam(CamExplainer):
    """Grad-CAM = ReLU(Σ_k α_k A_k) with α_k = mean over pixels of ∂y_t/∂A_k.

    Agrees with Captum ``LayerGradCam(relu_attributions=True)`` at the layer's resolution
    (``layer_maps``) and with pytorch-grad-cam's ``GradCAM`` after its min-max scaling and resize.
    """

    name = "gradcam"
    requires = (ACTIVATION_GRADIENTS,)
    summary = "ReLU(Σ_k mean(∂y_t/∂A_k) A_k): feature maps weighted by their average gradient"
    paper = "Selvaraju et al., Grad-CAM: Visual Explanations from Deep Networks via Gradient-based Localization, ICCV 2017"
    uses_gradients = True
    relu_output = True

    def weights(self, step: CamStep) -> torch.Tensor:
        return step.gradients.mean(dim=(2, 3))


@hookimpl
def register_explainers(register) -> None:
    register(GradCam)
