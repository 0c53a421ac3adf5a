"""Eigen-CAM (Muhammad & Yeasin, 2020)."""
from __future__ import annotations

import torch

from vexplain.core.adapter import ACTIVATIONS
from vexplain.core.hookspecs import hookimpl

from .cam_base import CamExplainer, CamStep


def first_component_projection(activations: torch.Tensor) -> torch.Tensor:
    """``(N, h, w)``: each image's activations, as h·w points in C dimensions centred per channel,
    projected on their first principal component (the first right singular vector). Computed in
    float64. Sign: chosen so the projection correlates non-negatively with the centred channel sum
    Σ_k A_k, i.e. the map is high where the layer is active."""
    n, c, h, w = activations.shape
    points = activations.reshape(n, c, h * w).transpose(1, 2).double()  # (N, hw, C)
    points = points - points.mean(dim=1, keepdim=True)
    _, _, vh = torch.linalg.svd(points, full_matrices=False)
    projection = points @ vh[:, 0, :, None]  # (N, hw, 1)
    agreement = (projection[..., 0] * points.sum(dim=2)).sum(dim=1)
    sign = torch.where(agreement < 0, -1.0, 1.0).to(projection.dtype)
    return (projection[..., 0] * sign[:, None]).reshape(n, h, w).to(activations.dtype)


class EigenCam(CamExplainer):
    """Eigen-CAM = A·v₁: the layer's activations projected on their first principal component
    (per image; channels centred over locations, as pytorch-grad-cam's ``get_2d_projection``).
    Class-agnostic: the target changes nothing, and the map does not depend on the classifier.
    Raw and signed (the paper applies no ReLU; pytorch-grad-cam applies ReLU and min-max). The sign
    of a principal component is arbitrary; vexplain orients it to correlate non-negatively with the
    centred channel sum Σ_k A_k. Option ``layer`` (default: the last feature map before global
    pooling)."""

    name = "eigencam"
    requires = (ACTIVATIONS,)
    summary = "projection of the layer's activations on their first principal component (class-agnostic, sign toward Σ_k A_k)"
    paper = "Muhammad & Yeasin, Eigen-CAM: Class Activation Map using Principal Components, IJCNN 2020"

    def cam(self, step: CamStep) -> torch.Tensor:
        return first_component_projection(step.activations)


@hookimpl
def register_explainers(register) -> None:
    register(EigenCam)
