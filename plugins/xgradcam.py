"""XGrad-CAM (Fu et al., 2020)."""
from __future__ import annotations

import torch

from vexplain.core.adapter import ACTIVATION_GRADIENTS
from vexplain.core.hookspecs import hookimpl

from .cam_base import CamExplainer, CamStep

#: added to each channel's activation sum, as pytorch-grad-cam does
EPS = 1e-7


class XGradCam(CamExplainer):
    """XGrad-CAM = ReLU(Σ_k w_k A_k) with w_k = Σ_ij (A_k(i,j) / (Σ_ab A_k(a,b) + 1e-7)) ∂y_t/∂A_k(i,j):
    each channel's gradient averaged with its normalised activations as the weights (pytorch-grad-cam
    ``XGradCAM``). Option ``layer`` (default: the last feature map before global pooling)."""

    name = "xgradcam"
    requires = (ACTIVATION_GRADIENTS,)
    summary = "ReLU(Σ_k w_k A_k), w_k = Σ_ij A_k,ij ∂y_t/∂A_k,ij / Σ_ij A_k,ij: gradients averaged with activation weights"
    paper = "Fu et al., Axiom-based Grad-CAM: Towards Accurate Visualization and Explanation of CNNs, BMVC 2020"
    uses_gradients = True
    relu_output = True

    def weights(self, step: CamStep) -> torch.Tensor:
        acts = step.activations
        sums = acts.sum(dim=(2, 3), keepdim=True)
        return (step.gradients * acts / (sums + EPS)).sum(dim=(2, 3))


@hookimpl
def register_explainers(register) -> None:
    register(XGradCam)
