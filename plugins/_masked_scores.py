"""Score-CAM's smoothed and integrated variants share one step: channel weights from the target
scores of the input masked by transformed activation masks, averaged over samples."""
from __future__ import annotations

from typing import Callable

import torch

from vexplain.core.engine_choice import auto_scorer
from vexplain.core.targets import gather_scores

from .cam_base import CamStep
from .scorecam import activation_masks

#: ``transform(masks, sample, channels) -> masks``: sample ``s``'s change to the ``(B, H, W)`` masks of ``channels``
MaskTransform = Callable[[torch.Tensor, int, torch.Tensor], torch.Tensor]


def mean_gain_weights(step: CamStep, samples: int, transform: MaskTransform, method: str) -> torch.Tensor:
    """``(N, C)`` softmax over channels k of (1/S) Σ_s [y_t(x ⊙ transform(M_k, s)) − y_t(x)], with
    M_k channel k's activation upsampled and min-max scaled (``activation_masks``) and S = ``samples``.
    The N·C masked inputs of each sample run in batches of ``batch_size`` (default from
    ``memory_mb``) through the adapter's fastest exact engine (``engine`` option); every row is
    computed the same way whatever the batch, so batching changes nothing. ``method`` names the
    caller for the engine choice's cache."""
    inputs, acts, options = step.inputs, step.activations, step.options
    n, c = acts.shape[:2]
    scorer, batch_size, choice_notes = auto_scorer(step.adapter, method, inputs, options, n * c * samples, n * c)
    size = tuple(inputs.shape[2:])
    flat_acts = acts.reshape(n * c, *acts.shape[2:])
    image_of = torch.arange(n, device=inputs.device).repeat_interleave(c)
    channel_of = torch.arange(c, device=inputs.device).repeat(n)
    gains = torch.zeros(n * c, dtype=torch.float64, device=inputs.device)
    base = gather_scores(step.scores, step.targets).double()
    for sample in range(samples):
        for start in range(0, n * c, batch_size):
            rows = slice(start, min(start + batch_size, n * c))
            masks = transform(activation_masks(flat_acts[rows], size), sample, channel_of[rows])
            scores = gather_scores(scorer.run(inputs[image_of[rows]] * masks[:, None]).to(inputs.device), step.targets[image_of[rows]])
            gains[rows] += scores.double() - base[image_of[rows]]
    step.notes.update({"batch_size": batch_size, "engine": scorer.engine, "masked_inputs": n * c * samples, **scorer.notes, **choice_notes})
    return torch.softmax(gains.reshape(n, c) / samples, dim=1).to(acts.dtype)
