"""KPCA-CAM (Karmani et al., 2024): Eigen-CAM with kernel PCA."""
from __future__ import annotations

import torch

from vexplain.core.adapter import ACTIVATIONS
from vexplain.core.hookspecs import hookimpl
from vexplain.core.options import Option, choice, number, optional

from .cam_base import CamExplainer, CamStep

#: scikit-learn's KernelPCA defaults for the sigmoid and polynomial kernels
COEF0, DEGREE = 1.0, 3


def kernel_matrix(points: torch.Tensor, kernel: str, gamma: float) -> torch.Tensor:
    """``(N, P, P)`` kernel values between the ``P`` points of each ``(N, P, C)`` set, as
    scikit-learn's ``pairwise_kernels``: linear x·y, poly (γ x·y + 1)³, rbf exp(−γ‖x − y‖²),
    sigmoid tanh(γ x·y + 1), cosine x·y / (‖x‖‖y‖) (a zero vector gives 0)."""
    dots = points @ points.transpose(1, 2)
    if kernel == "linear":
        return dots
    if kernel == "poly":
        return (gamma * dots + COEF0) ** DEGREE
    if kernel == "sigmoid":
        return torch.tanh(gamma * dots + COEF0)
    if kernel == "rbf":
        norms = dots.diagonal(dim1=1, dim2=2)
        return torch.exp(-gamma * (norms[:, :, None] + norms[:, None, :] - 2 * dots).clamp(min=0))
    lengths = points.norm(dim=2)
    lengths = torch.where(lengths > 0, lengths, torch.ones_like(lengths))
    return dots / (lengths[:, :, None] * lengths[:, None, :])


def kernel_first_component(activations: torch.Tensor, kernel: str, gamma: float) -> torch.Tensor:
    """``(N, h, w)``: each image's activations as h·w points in C dimensions, centred per channel,
    projected on the first kernel principal component: with K the kernel matrix centred in feature
    space (K − 1K − K1 + 1K1, 1 the all-1/P matrix) and (λ, α) its largest eigenpair, the
    projection is α·√λ (scikit-learn's ``KernelPCA(n_components=1).fit_transform``; λ ≤ 0 gives
    zeros). Computed in float64. Sign oriented to correlate non-negatively with the centred
    channel sum Σ_k A_k (scikit-learn makes the largest-magnitude entry positive)."""
    n, c, h, w = activations.shape
    points = activations.reshape(n, c, h * w).transpose(1, 2).double()
    points = points - points.mean(dim=1, keepdim=True)
    matrix = kernel_matrix(points, kernel, gamma)
    row_means = matrix.mean(dim=2, keepdim=True)
    centred = matrix - row_means - row_means.transpose(1, 2) + matrix.mean(dim=(1, 2), keepdim=True)
    values, vectors = torch.linalg.eigh((centred + centred.transpose(1, 2)) / 2)
    projection = vectors[:, :, -1] * values[:, -1:].clamp(min=0).sqrt()
    agreement = (projection * points.sum(dim=2)).sum(dim=1)
    sign = torch.where(agreement < 0, -1.0, 1.0).to(projection.dtype)
    return (projection * sign[:, None]).reshape(n, h, w).to(activations.dtype)


class KpcaCam(CamExplainer):
    """KPCA-CAM: the layer's activations (h·w points in C dimensions, centred per channel)
    projected on their first *kernel* principal component (``kernel_first_component``), as
    pytorch-grad-cam's ``KPCA_CAM`` (which calls scikit-learn's ``KernelPCA``). Class-agnostic
    like Eigen-CAM; forward passes only, so it runs on ONNX models.

    Raw and signed (pytorch-grad-cam applies ReLU and min-max; its sign comes from scikit-learn's
    largest-entry-positive rule, vexplain orients it toward the centred channel sum Σ_k A_k).
    Options: ``layer`` (default: the last feature map before global pooling), ``kernel`` =
    "sigmoid" (the paper's and pytorch-grad-cam's default; also "rbf", "poly", "linear" (which is
    Eigen-CAM), "cosine"), ``gamma`` (default 1/C, scikit-learn's; unused by "linear" and
    "cosine"), ``aug_smooth``.
    """

    name = "kpcacam"
    requires = (ACTIVATIONS,)
    summary = "projection of the layer's activations on their first kernel principal component (class-agnostic, sign toward Σ_k A_k)"
    paper = "Karmani et al., KPCA-CAM: Visual Explainability of Deep Computer Vision Models using Kernel PCA, IEEE MMSP 2024"
    options = {
        **CamExplainer.options,
        "kernel": Option("sigmoid", choice("sigmoid", "rbf", "poly", "linear", "cosine"), "kernel of the kernel PCA"),
        "gamma": Option(None, optional(number(above=0)), "kernel coefficient γ; default 1/C (C = the layer's channels)"),
    }

    def cam(self, step: CamStep) -> torch.Tensor:
        gamma = step.options["gamma"] or 1.0 / step.activations.shape[1]
        step.notes["gamma"] = gamma
        return kernel_first_component(step.activations, step.options["kernel"], gamma)


@hookimpl
def register_explainers(register) -> None:
    register(KpcaCam)
