"""SS-CAM (Wang et al., 2020): Score-CAM with noisy masks."""
from __future__ import annotations

import torch

from vexplain.core.adapter import ACTIVATIONS
from vexplain.core.engine_choice import engine_option
from vexplain.core.hookspecs import hookimpl
from vexplain.core.options import MAX_SAMPLES, integer, number, Option, seed
from vexplain.core.perturbation import batch_options

from ._masked_scores import mean_gain_weights
from .cam_base import CamExplainer, CamStep


def sample_noise(seed: int, sample: int, shape: tuple[int, ...], std: float) -> torch.Tensor:
    """Noise sample ``sample`` ``(C, H, W)``, N(0, std²) from its own generator seeded by
    (``seed``, ``sample``), so it never depends on the batch or on other samples."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + sample)
    return torch.randn(shape, generator=generator) * std


class SsCam(CamExplainer):
    """SS-CAM = ReLU(Σ_k w_k A_k), w = softmax over k of (1/S) Σ_s [y_t(x ⊙ (M_k + δ_s,k)) − y_t(x)]:
    Score-CAM's weights averaged over S noisy copies of each mask, where M_k is channel k's
    activation upsampled (bilinear, align_corners=False) and min-max scaled to [0, 1] as in
    vexplain's Score-CAM, and δ_s,k ~ N(0, std²) per pixel (torchcam's ``SSCAM``; the paper also
    considers noise on the input). y_t(x) is the baseline of the paper's formula; the softmax
    cancels it. ``std=0`` is Score-CAM.

    Noise sample s of channel k is the same for every image of a call (drawn from ``seed`` and s
    alone), so batching cannot change a map; torchcam draws fresh noise per image from the global
    generator. torchcam min-max scales each activation at the layer's size and then upsamples;
    both agree when the layer has the input's size.

    Options: ``layer`` (default: the last feature map before global pooling), ``samples`` = 35
    and ``std`` = 2.0 (torchcam's defaults), ``seed`` = 0, ``batch_size`` (masked inputs per
    forward; default from ``memory_mb`` = 1024), ``engine`` = "auto", ``aug_smooth``, ``eigen_smooth``.
    Runs samples·N·C forward passes; forward only, so it runs on ONNX models.
    """

    name = "sscam"
    requires = (ACTIVATIONS,)
    summary = "ReLU(Σ_k w_k A_k), w = softmax_k of the mean gain y_t(x ⊙ (M_k + noise)) − y_t(x) over noisy copies of the min-max upsampled A_k"
    paper = "Wang et al., SS-CAM: Smoothed Score-CAM for Sharper Visual Feature Localization, arXiv 2006.14255, 2020"
    relu_output = True
    options = {
        **CamExplainer.options,
        "samples": Option(35, integer(1, maximum=MAX_SAMPLES), f"noisy copies of each mask (at most {MAX_SAMPLES})"),
        "std": Option(2.0, number(minimum=0), "standard deviation of the Gaussian noise added to the [0, 1] masks"),
        "seed": Option(0, seed(), "seed (0 .. 2**63 - 1) of the noise"),
        **batch_options("masked inputs per forward pass"),
        "engine": engine_option("forward", "which engine runs the masked batches"),
    }

    def weights(self, step: CamStep) -> torch.Tensor:
        options, inputs = step.options, step.inputs
        shape = (step.activations.shape[1], *inputs.shape[2:])
        current: dict[int, torch.Tensor] = {}

        def noisy(masks: torch.Tensor, sample: int, channels: torch.Tensor) -> torch.Tensor:
            if sample not in current:
                current.clear()
                current[sample] = sample_noise(options["seed"], sample, shape, options["std"]).to(inputs.device, inputs.dtype)
            return masks + current[sample][channels]

        return mean_gain_weights(step, options["samples"], noisy, self.name)


@hookimpl
def register_explainers(register) -> None:
    register(SsCam)
