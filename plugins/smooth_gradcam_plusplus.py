"""Smooth Grad-CAM++ (Omeiza et al., 2019): Grad-CAM++ with derivatives averaged over noisy inputs."""
from __future__ import annotations

import torch

from vexplain.core.adapter import ACTIVATION_GRADIENTS
from vexplain.core.hookspecs import hookimpl
from vexplain.core.options import MAX_SAMPLES, integer, number, Option, seed
from vexplain.core.targets import TargetRequest

from .cam_base import CamExplainer, CamStep
from .sscam import sample_noise

#: added to the denominator of α, as torchcam does
EPS = 1e-8


class SmoothGradCamPlusPlus(CamExplainer):
    """Smooth Grad-CAM++ = ReLU(Σ_k w_k A_k), A the clean input's activations, with the gradient
    powers of Grad-CAM++ averaged over S noisy inputs x + δ_s, δ_s ~ N(0, std²) per pixel: with
    G_s = ∂y_t/∂A at x + δ_s and D_p = (1/S) Σ_s G_s^p,

        α_k(i,j) = D2 / (2 D2 + (Σ_ab A_k(a,b)) D3 + 1e-8)   (α = 0 where D2 = 0),
        w_k = Σ_ij α_k(i,j) ReLU(D1_k(i,j))

    (the paper's eqs. with the averaged derivatives in Grad-CAM++'s closed form). The target is
    the one chosen on the clean input. Differences from torchcam's ``SmoothGradCAMpp`` (pinned by a
    test): torchcam's denominator sums the products Σ_ab A_k(a,b) D3(a,b) instead of multiplying
    D3(i,j) by Σ_ab A_k(a,b), its w uses the last noisy sample's gradient instead of D1, and its
    map weights the last noisy sample's activations (its hooks keep the last forward pass) instead
    of the clean input's.

    Noise sample s is the same for every image of a call (drawn from ``seed`` and s alone), so
    batching cannot change a map. Options: ``layer`` (default: the last feature map before global
    pooling), ``samples`` = 4 and ``std`` = 0.3 (torchcam's defaults), ``seed`` = 0,
    ``aug_smooth``, ``eigen_smooth``. Runs S + 1 batched forward and backward passes.
    """

    name = "smooth_gradcam_plusplus"
    requires = (ACTIVATION_GRADIENTS,)
    summary = "Grad-CAM++ with the gradient's first, second and third powers averaged over noisy copies of the input"
    paper = "Omeiza et al., Smooth Grad-CAM++: An Enhanced Inference Level Visualization Technique for Deep Convolutional Neural Network Models, arXiv 1908.01224, 2019"
    uses_gradients = True
    relu_output = True
    options = {
        **CamExplainer.options,
        "samples": Option(4, integer(1, maximum=MAX_SAMPLES), f"noisy copies of the input (at most {MAX_SAMPLES})"),
        "std": Option(0.3, number(minimum=0), "standard deviation of the Gaussian noise added to the input"),
        "seed": Option(0, seed(), "seed (0 .. 2**63 - 1) of the noise"),
    }

    def weights(self, step: CamStep) -> torch.Tensor:
        inputs, options = step.inputs, step.options
        request = TargetRequest(step.targets.cpu(), len(inputs))
        moments = [torch.zeros_like(step.activations, dtype=torch.float64) for _ in range(3)]
        for sample in range(options["samples"]):
            noise = sample_noise(options["seed"], sample, tuple(inputs.shape[1:]), options["std"]).to(inputs.device, inputs.dtype)
            grads = step.to_map(step.adapter.activation_gradients(inputs + noise, step.layer, request).gradients.to(inputs.device)).double()
            for power, moment in enumerate(moments, start=1):
                moment += grads**power
        d1, d2, d3 = (moment / options["samples"] for moment in moments)
        sums = step.activations.double().sum(dim=(2, 3), keepdim=True)
        alpha = torch.where(d2 != 0, d2 / (2 * d2 + sums * d3 + EPS), torch.zeros_like(d2))
        return (alpha * torch.relu(d1)).sum(dim=(2, 3)).to(step.activations.dtype)


@hookimpl
def register_explainers(register) -> None:
    register(SmoothGradCamPlusPlus)
