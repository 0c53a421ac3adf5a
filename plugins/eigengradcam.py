"""Eigen-Grad-CAM (pytorch-grad-cam's class-discriminative Eigen-CAM)."""
from __future__ import annotations

import torch

from vexplain.core.adapter import ACTIVATION_GRADIENTS
from vexplain.core.hookspecs import hookimpl

from .cam_base import CamExplainer, CamStep, first_component_projection


class EigenGradCam(CamExplainer):
    """Eigen-Grad-CAM = (G ⊙ A)·v₁: the element-wise products of the layer's activations A and
    gradients G = ∂y_t/∂A, as h·w points in C dimensions centred per channel, projected on their
    first principal component (per image), as pytorch-grad-cam's ``EigenGradCAM``
    (``get_2d_projection(grads * activations)``). Eigen-CAM made class-discriminative by the gradient.

    Raw and signed like Eigen-CAM (pytorch-grad-cam applies ReLU and min-max on top); the
    component's sign is oriented to correlate non-negatively with the centred channel sum
    Σ_k G_k ⊙ A_k (the HiResCAM map), where pytorch-grad-cam keeps the SVD's arbitrary sign.
    Options ``layer`` (default: the last feature map before global pooling) and ``aug_smooth``;
    ``eigen_smooth`` is what this method already is.
    """

    name = "eigengradcam"
    requires = (ACTIVATION_GRADIENTS,)
    summary = "projection of ∂y_t/∂A ⊙ A on its first principal component (signed, sign toward Σ_k ∂y_t/∂A_k ⊙ A_k)"
    paper = "Gildenblat et al., pytorch-grad-cam (EigenGradCAM), github.com/jacobgil/pytorch-grad-cam, 2021; after Muhammad & Yeasin, Eigen-CAM, IJCNN 2020"
    uses_gradients = True

    def cam(self, step: CamStep) -> torch.Tensor:
        return first_component_projection(step.gradients * step.activations)


@hookimpl
def register_explainers(register) -> None:
    register(EigenGradCam)
