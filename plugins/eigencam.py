"""Eigen-CAM (Muhammad & Yeasin, 2020)."""
from __future__ import annotations

import torch

from vexplain.core.adapter import ACTIVATIONS
from vexplain.core.hookspecs import hookimpl

from .cam_base import CamExplainer, CamStep, first_component_projection


class EigenCam(CamExplainer):
    """Eigen-CAM = A·v₁: the layer's activations projected on their first principal component
    (per image; channels centred over locations, as pytorch-grad-cam's ``get_2d_projection``).
    Class-agnostic: the target changes nothing, and the map does not depend on the classifier.
    Raw and signed (the paper applies no ReLU; pytorch-grad-cam applies ReLU and min-max). The sign
    of a principal component is arbitrary; vexplain orients it to correlate non-negatively with the
    centred channel sum Σ_k A_k. Options ``layer`` (default: the last feature map before global
    pooling) and ``aug_smooth`` (see the CAM base; ``eigen_smooth`` would change nothing)."""

    name = "eigencam"
    requires = (ACTIVATIONS,)
    summary = "projection of the layer's activations on their first principal component (class-agnostic, sign toward Σ_k A_k)"
    paper = "Muhammad & Yeasin, Eigen-CAM: Class Activation Map using Principal Components, IJCNN 2020"

    def cam(self, step: CamStep) -> torch.Tensor:
        return first_component_projection(step.activations)


@hookimpl
def register_explainers(register) -> None:
    register(EigenCam)
