"""FullGrad (Srinivas & Fleuret, NeurIPS 2019): input-gradient and bias-gradient maps, summed."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from vexplain.core.adapter import BIAS_GRADIENTS, ModelAdapter
from vexplain.core.explainer import Attribution, Explainer
from vexplain.core.hookspecs import hookimpl
from vexplain.core.notices import warn
from vexplain.core.options import Option, choice
from vexplain.core.targets import TargetRequest

PAPER, PER_CHANNEL = "paper", "per_channel"
#: pytorch-grad-cam's guard in ``scale_cam_image``: (v − min) / (max − min + 1e-7)
PGC_GUARD = 1e-7


def scaled(values: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """``values`` min-max scaled to [0, 1] over ``dims`` (a constant slice becomes zeros)."""
    low = values.amin(dim=dims, keepdim=True)
    span = values.amax(dim=dims, keepdim=True) - low
    return torch.where(span > 0, (values - low) / torch.where(span > 0, span, torch.ones_like(span)), torch.zeros_like(values))


def psi(values: torch.Tensor, size: tuple[int, int], postprocess: str) -> torch.Tensor:
    """FullGrad's post-processing of one ``(N, C, h, w)`` term to an ``(N, H, W)`` map: |·|, min-max
    to [0, 1], bilinear upsampling to ``size``, sum over channels. ``"paper"``: scaled per image over
    all channels and positions together, upsampled with ``align_corners=True`` (the authors' code);
    ``"per_channel"``: each channel scaled on its own as (v − min)/(max − min + 1e-7), upsampled with
    ``align_corners=False`` (pytorch-grad-cam's ``scale_accross_batch_and_channels``, its guard and
    OpenCV's resize)."""
    values = values.abs()
    if postprocess == PAPER:
        values = scaled(values, (1, 2, 3))
    else:
        values = values - values.amin(dim=(2, 3), keepdim=True)
        values = values / (values.amax(dim=(2, 3), keepdim=True) + PGC_GUARD)
    summed = values.sum(dim=1, keepdim=True)  # bilinear upsampling is linear: summing first is exact and C times cheaper
    if tuple(summed.shape[2:]) != tuple(size):
        summed = F.interpolate(summed, size=size, mode="bilinear", align_corners=postprocess == PAPER)
    return summed[:, 0]


class FullGrad(Explainer):
    """FullGrad saliency: S(x) = ψ(∇ₓy_t ⊙ x) + Σ_l ψ(∇_{b_l}y_t ⊙ b_l), the input-gradient term plus,
    for every layer l whose bias-gradient is spatial (convolutions and BatchNorm on 4-D feature
    maps), its bias b_l (per channel) times d(y_t)/d(the layer's output). ψ = |·|, min-max to [0, 1]
    per image over the term's channels and positions, bilinear upsampling to the input size, sum over
    channels (``psi``). A BatchNorm's bias is its implicit one in eval mode, β − γ μ/√(σ² + ε), as the
    paper defines (a BatchNorm with ``affine=False`` has one too). Biases of ``nn.Linear`` layers on
    pooled features are part of the full-gradient decomposition (y = ∇ₓy·x + Σ ∇_b y·b for ReLU
    networks; ``adapter.bias_gradients`` returns them) but not spatial, so, as in the paper, they add
    nothing to the map. Maps are raw sums of the per-term maps (each in [0, C_l]);
    ``exp.normalized("minmax")`` is the usual picture. ``exp.options["bias_layers"]`` counts the
    layers that contributed.

    Option ``postprocess`` = "paper" (default) or "per_channel". pytorch-grad-cam's ``FullGrad``
    differs from the paper in ψ: it scales every channel of every term to [0, 1] on its own (so a
    channel with tiny bias-gradients weighs as much as the strongest), resizes with OpenCV
    (``align_corners=False``; the authors' code uses ``align_corners=True``), and only takes
    ``Conv2d`` and ``BatchNorm2d`` modules whose ``bias`` is not None (a BatchNorm without affine
    parameters is skipped); its scaling divides by max − min + 1e-7, which visibly shrinks
    channels whose values span less than about 1e-5. ``postprocess="per_channel"`` reproduces its
    ψ, guard included; "paper" scales exactly (scale-free; the authors' code adds 1e-6 to the max).
    Scaled per channel, |b_c · g_c| loses the bias's magnitude |b_c| (only a zero bias and the guard
    remain), so "per_channel" is nearly a per-channel-normalised |gradient| map. pytorch-grad-cam
    also pairs biases (listed in module order) with gradients (recorded in execution order) by
    position, so on a model that runs a module before one registered earlier (a ResNet block whose
    shortcut runs before its main branch) it multiplies gradients by another layer's bias;
    vexplain pairs each gradient with its own module's bias. Needs gradients
    (PyTorch only); FullGrad uses every layer, so there is no ``layer`` option and no
    ``eigen_smooth``/``aug_smooth``.
    """

    name = "fullgrad"
    requires = (BIAS_GRADIENTS,)
    summary = "ψ(∇ₓy_t ⊙ x) + Σ_l ψ(∇_b y_t ⊙ b_l) over conv/BatchNorm biases; ψ = abs, min-max per layer, upsample, channel sum"
    paper = "Srinivas & Fleuret, Full-Gradient Representation for Neural Network Visualization, NeurIPS 2019"
    options = {
        "postprocess": Option(PAPER, choice(PAPER, PER_CHANNEL), "'paper': min-max each term over all its channels; 'per_channel': each channel on its own (pytorch-grad-cam)"),
    }

    def attribute(self, adapter: ModelAdapter, inputs: torch.Tensor, targets: TargetRequest, options: dict[str, Any]) -> Attribution:
        result = adapter.bias_gradients(inputs, targets)
        size = tuple(inputs.shape[2:])
        postprocess = options["postprocess"]
        maps = psi(result.input_gradients.to(inputs.device) * inputs, size, postprocess)
        used = 0
        for bias, gradient, axis in zip(result.biases, result.gradients, result.channel_axes):
            if gradient.dim() != 4 or axis != 1 or gradient.shape[2] * gradient.shape[3] < 2:
                continue
            maps = maps + psi(gradient.to(inputs.device) * bias.to(inputs.device)[None, :, None, None], size, postprocess)
            used += 1
        if used == 0:
            warn("fullgrad: the model has no convolution or BatchNorm bias on a feature map, so the map is the input-gradient term alone")
        return Attribution(maps=maps, scores=result.scores.to(inputs.device), targets=result.targets.to(inputs.device), notes={"bias_layers": used})


@hookimpl
def register_explainers(register) -> None:
    register(FullGrad)
