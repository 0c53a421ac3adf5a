"""Grad-CAM element-wise (pytorch-grad-cam's ``GradCAMElementWise``)."""
from __future__ import annotations

import torch

from vexplain.core.adapter import ACTIVATION_GRADIENTS
from vexplain.core.hookspecs import hookimpl

from .cam_base import CamExplainer, CamStep


class GradCamElementWise(CamExplainer):
    """Grad-CAM element-wise = Σ_k ReLU(∂y_t/∂A_k ⊙ A_k): each location's gradient-times-activation,
    negative products clipped before the channel sum (unlike HiResCAM, which sums signed
    products, and LayerCAM, which clips the gradient only). Non-negative by construction.
    Options ``layer`` (default: the last feature map before global pooling), ``aug_smooth`` and
    ``eigen_smooth`` (the first principal component of the clipped products), as in the CAM base.
    """

    name = "gradcam_elementwise"
    requires = (ACTIVATION_GRADIENTS,)
    summary = "Σ_k ReLU(∂y_t/∂A_k ⊙ A_k): gradient times activation, negative products clipped per location and channel"
    paper = "Gildenblat et al., pytorch-grad-cam (GradCAMElementWise), github.com/jacobgil/pytorch-grad-cam, 2022"
    uses_gradients = True
    relu_output = True

    def weighted_activations(self, step: CamStep) -> torch.Tensor:
        return torch.relu(step.gradients * step.activations)


@hookimpl
def register_explainers(register) -> None:
    register(GradCamElementWise)
