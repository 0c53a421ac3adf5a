"""Score-CAM (Wang et al., 2020)."""
from __future__ import annotations

import torch

from vexplain.core.adapter import ACTIVATIONS
from vexplain.core.engine_choice import auto_scorer, engine_option
from vexplain.core.hookspecs import hookimpl
from vexplain.core.perturbation import batch_options
from vexplain.core.postprocess import upsample
from vexplain.core.targets import gather_scores

from .cam_base import CamExplainer, CamStep

#: added to each mask's value range, as pytorch-grad-cam does
EPS = 1e-8


def activation_masks(activations: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(B, H, W)``: each ``(h, w)`` activation upsampled bilinearly (align_corners=False) and
    min-max scaled to [0, 1] as (U − min) / (max − min + 1e-8)."""
    up = upsample(activations, size)
    flat = up.reshape(len(up), -1)
    low = flat.min(dim=1).values[:, None, None]
    high = flat.max(dim=1).values[:, None, None]
    return (up - low) / (high - low + EPS)


class ScoreCam(CamExplainer):
    """Score-CAM = ReLU(Σ_k w_k A_k), w = softmax over channels k of y_t(x ⊙ M_k), where M_k is
    channel k's activation upsampled to the input size and min-max scaled (``activation_masks``).

    As pytorch-grad-cam's ``ScoreCAM``: the target score of each masked input as the model outputs
    it, softmax across channels (the paper's "increase of confidence" subtracts a baseline input's
    score, the same for every channel, which the softmax cancels). Masks are upsampled with
    align_corners=False like every CAM map here (pytorch-grad-cam's ``UpsamplingBilinear2d`` uses
    align_corners=True, so its masks differ slightly at the borders).
    The N·C masked inputs run in batches through the adapter's fastest exact engine (ONNX Runtime
    for a PyTorch model on the CPU, the model's device otherwise; ONNX models run natively).

    Options: ``layer`` (default: the last feature map before global pooling), ``batch_size``
    (masked inputs per forward; default derived from ``memory_mb`` = 1024), ``engine`` = "auto".
    """

    name = "scorecam"
    requires = (ACTIVATIONS,)
    summary = "ReLU(Σ_k w_k A_k), w = softmax_k of y_t(x ⊙ upsampled min-max A_k): channels weighted by the score of the input they reveal"
    paper = "Wang et al., Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural Networks, CVPR Workshops 2020"
    relu_output = True
    options = {
        **CamExplainer.options,
        **batch_options("masked inputs per forward pass"),
        "engine": engine_option("forward", "which engine runs the masked batches"),
    }

    def weights(self, step: CamStep) -> torch.Tensor:
        inputs, acts, options = step.inputs, step.activations, step.options
        n, c = acts.shape[:2]
        scorer, batch_size, choice_notes = auto_scorer(step.adapter, self.name, inputs, options, n * c, n * c)
        size = tuple(inputs.shape[2:])
        flat_acts = acts.reshape(n * c, *acts.shape[2:])
        image_of = torch.arange(n, device=inputs.device).repeat_interleave(c)
        scores = torch.empty(n * c, device=inputs.device)
        for start in range(0, n * c, batch_size):
            rows = slice(start, min(start + batch_size, n * c))
            masks = activation_masks(flat_acts[rows], size)
            masked = inputs[image_of[rows]] * masks[:, None]
            scores[rows] = gather_scores(scorer.run(masked).to(inputs.device), step.targets[image_of[rows]])
        step.notes.update({"batch_size": batch_size, "engine": scorer.engine, "masked_inputs": n * c, **scorer.notes, **choice_notes})
        return torch.softmax(scores.reshape(n, c), dim=1)


@hookimpl
def register_explainers(register) -> None:
    register(ScoreCam)
