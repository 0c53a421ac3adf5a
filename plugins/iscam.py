"""IS-CAM (Naidu et al., 2020): Score-CAM integrated along the mask's intensity."""
from __future__ import annotations

import torch

from vexplain.core.adapter import ACTIVATIONS
from vexplain.core.engine_choice import engine_option
from vexplain.core.hookspecs import hookimpl
from vexplain.core.options import MAX_SAMPLES, integer, Option
from vexplain.core.perturbation import batch_options

from ._masked_scores import mean_gain_weights
from .cam_base import CamExplainer, CamStep


def path_coefficients(samples: int) -> list[float]:
    """The paper's integration points s/S, s = 1 .. S (the last one is the full mask)."""
    return [(s + 1) / samples for s in range(samples)]


class IsCam(CamExplainer):
    """IS-CAM = ReLU(Σ_k w_k A_k), w = softmax over k of (1/S) Σ_{s=1..S} [y_t(x ⊙ (s/S) M_k) − y_t(x)]:
    Score-CAM's score of the masked input integrated (a Riemann sum, as integrated gradients)
    along the path from the empty mask to M_k, channel k's activation upsampled (bilinear,
    align_corners=False) and min-max scaled to [0, 1] as in vexplain's Score-CAM. ``samples=1`` is
    Score-CAM.

    Difference from torchcam's ``ISCAM`` (pinned by a test): torchcam accumulates its coefficient,
    scaling the s-th masked input by Σ_{j≤s} j/S (up to (S+1)/2, i.e. 5.5 for S = 10), so its
    path leaves the [0, 1] segment the paper integrates over; vexplain uses s/S. torchcam also
    min-max scales at the layer's size before upsampling (the same when the layer has the input's size).

    Options: ``layer`` (default: the last feature map before global pooling), ``samples`` = 10
    (torchcam's default), ``batch_size`` (masked inputs per forward; default from ``memory_mb`` =
    1024), ``engine`` = "auto", ``aug_smooth``, ``eigen_smooth``. Runs samples·N·C forward passes;
    forward only, so it runs on ONNX models.
    """

    name = "iscam"
    requires = (ACTIVATIONS,)
    summary = "ReLU(Σ_k w_k A_k), w = softmax_k of the mean gain y_t(x ⊙ (s/S) M_k) − y_t(x) over s = 1..S: Score-CAM integrated along the mask's intensity"
    paper = "Naidu et al., IS-CAM: Integrated Score-CAM for axiomatic-based explanations, arXiv 2010.03023, 2020"
    relu_output = True
    options = {
        **CamExplainer.options,
        "samples": Option(10, integer(1, maximum=MAX_SAMPLES), f"integration points s/S along the path to the full mask (at most {MAX_SAMPLES})"),
        **batch_options("masked inputs per forward pass"),
        "engine": engine_option("forward", "which engine runs the masked batches"),
    }
    #: the integration points for ``samples`` (a hook for tests that reproduce torchcam's path)
    coefficients = staticmethod(path_coefficients)

    def weights(self, step: CamStep) -> torch.Tensor:
        coefficients = self.coefficients(step.options["samples"])
        return mean_gain_weights(step, len(coefficients), lambda masks, sample, _: masks * coefficients[sample], self.name)


@hookimpl
def register_explainers(register) -> None:
    register(IsCam)
