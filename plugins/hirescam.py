"""HiResCAM (Draelos & Carin, 2020)."""
from __future__ import annotations

import torch

from vexplain.core.adapter import ACTIVATION_GRADIENTS
from vexplain.core.hookspecs import hookimpl

from .cam_base import CamExplainer, CamStep


class HiResCam(CamExplainer):
    """HiResCAM = Σ_k (∂y_t/∂A_k) ⊙ A_k: gradients times activations element-wise, summed over
    channels, raw (signed; the paper proves it generalises CAM: on a conv → global average pooling →
    linear head it equals CAM / (h·w)). pytorch-grad-cam's ``HiResCAM`` applies ReLU and min-max
    scaling on top. Option ``layer`` (default: the last feature map before global pooling)."""

    name = "hirescam"
    requires = (ACTIVATION_GRADIENTS,)
    summary = "Σ_k ∂y_t/∂A_k ⊙ A_k: element-wise gradient times activation, summed over channels (signed)"
    paper = "Draelos & Carin, Use HiResCAM instead of Grad-CAM for faithful explanations of convolutional neural networks, arXiv 2011.08891, 2020"
    uses_gradients = True

    def weighted_activations(self, step: CamStep) -> torch.Tensor:
        return step.gradients * step.activations


@hookimpl
def register_explainers(register) -> None:
    register(HiResCam)
