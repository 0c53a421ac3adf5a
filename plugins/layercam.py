"""LayerCAM (Jiang et al., 2021)."""
from __future__ import annotations

import torch

from vexplain.core.adapter import ACTIVATION_GRADIENTS
from vexplain.core.hookspecs import hookimpl

from .cam_base import CamExplainer, CamStep


class LayerCam(CamExplainer):
    """LayerCAM = ReLU(Σ_k ReLU(∂y_t/∂A_k) ⊙ A_k): each location weighted by its own positive
    gradient (pytorch-grad-cam ``LayerCAM``). Meant for shallow layers too: pass several with
    ``layer="a,b,c"`` to combine them. Option ``layer`` (default: the last feature map before
    global pooling)."""

    name = "layercam"
    requires = (ACTIVATION_GRADIENTS,)
    summary = "ReLU(Σ_k ReLU(∂y_t/∂A_k) ⊙ A_k): activations weighted element-wise by their positive gradients"
    paper = "Jiang et al., LayerCAM: Exploring Hierarchical Class Activation Maps for Localization, IEEE TIP 2021"
    uses_gradients = True
    relu_output = True

    def weighted_activations(self, step: CamStep) -> torch.Tensor:
        return torch.relu(step.gradients) * step.activations


@hookimpl
def register_explainers(register) -> None:
    register(LayerCam)
