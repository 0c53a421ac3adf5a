"""Grad-CAM++ (Chattopadhay et al., 2018)."""
from __future__ import annotations

import torch

from vexplain.core.adapter import ACTIVATION_GRADIENTS
from vexplain.core.hookspecs import hookimpl

from .cam_base import CamExplainer, CamStep

#: added to the denominator of α, as pytorch-grad-cam does
EPS = 1e-6


class GradCamPlusPlus(CamExplainer):
    """Grad-CAM++ = ReLU(Σ_k w_k A_k) with w_k = Σ_ij α_k(i,j) ReLU(g_k(i,j)), g = ∂y_t/∂A and

        α_k(i,j) = g² / (2 g² + (Σ_ab A_k(a,b)) g³ + 1e-6), and α = 0 where g = 0

    (the paper's eq. 19 with the exponential-score closed form, as pytorch-grad-cam's
    ``GradCAMPlusPlus.get_cam_weights`` computes it). Option ``layer`` (default: the last feature
    map before global pooling; several layers combine as in the CAM base).
    """

    name = "gradcam_plusplus"
    aliases = ('gradcam++',)
    requires = (ACTIVATION_GRADIENTS,)
    summary = "ReLU(Σ_k w_k A_k), w_k = Σ_ij α_k,ij ReLU(∂y_t/∂A_k,ij) with α from second and third powers of the gradient"
    paper = "Chattopadhay et al., Grad-CAM++: Generalized Gradient-based Visual Explanations for Deep Convolutional Networks, WACV 2018"
    uses_gradients = True
    relu_output = True

    def weights(self, step: CamStep) -> torch.Tensor:
        grads, acts = step.gradients, step.activations
        squared = grads**2
        sums = acts.sum(dim=(2, 3), keepdim=True)
        alpha = squared / (2 * squared + sums * squared * grads + EPS)
        alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
        return (torch.relu(grads) * alpha).sum(dim=(2, 3))


@hookimpl
def register_explainers(register) -> None:
    register(GradCamPlusPlus)
