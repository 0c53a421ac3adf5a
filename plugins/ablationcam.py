"""Ablation-CAM (Desai & Ramaswamy, 2020)."""
from __future__ import annotations

import torch

from vexplain.core.adapter import ACTIVATION_REPLACEMENT, ACTIVATIONS
from vexplain.core.hookspecs import hookimpl
from vexplain.core.perturbation import batch_options, derived_batch_size
from vexplain.core.targets import gather_scores

from .cam_base import CamExplainer, CamStep


class AblationCam(CamExplainer):
    """Ablation-CAM = ReLU(Σ_k w_k A_k), w_k = (y_t − y_t^(k)) / y_t, where y_t^(k) is the target
    score with channel k of the layer's output set to zero (the paper's ablation; pytorch-grad-cam
    instead writes min(A) − 1e7 when the layer has negative values).

    Only the network after the layer is recomputed for each ablated channel: ONNX models run the
    graph split at the layer; PyTorch models swap the layer's output for the batch of ablated
    activations with a forward hook (the layers before it then run once per batch, on the single
    input, so larger batches amortise them). ``exp.options["ablation_engine"]`` says how.

    y_t is in the denominator: a target score near zero makes the weights large (float32 noise
    with them), a negative one flips their sign. Each image's activations therefore come from a
    forward pass of that image alone, so how inputs are batched cannot change its map.

    Options: ``layer`` (default: the last feature map before global pooling); ``batch_size``,
    ablated channels per forward pass, by default as many as fit in ``memory_mb`` = 1024 with
    their activations (``batch_size_for`` on the layer's shape, at most 256; pytorch-grad-cam
    uses 32).
    """

    name = "ablationcam"
    requires = (ACTIVATIONS, ACTIVATION_REPLACEMENT)
    summary = "ReLU(Σ_k w_k A_k), w_k = (y_t − y_t with channel k zeroed) / y_t: the relative score drop when a channel is ablated"
    paper = "Desai & Ramaswamy, Ablation-CAM: Visual Explanations for Deep Convolutional Network via Gradient-free Localization, WACV 2020"
    relu_output = True
    per_image_activations = True
    options = {
        **CamExplainer.options,
        **batch_options("ablated channels per forward pass"),
    }

    def weights(self, step: CamStep) -> torch.Tensor:
        acts = step.activations
        n, c = acts.shape[:2]
        batch_size = derived_batch_size(step.options, acts.shape[1:])
        base = gather_scores(step.scores, step.targets)
        ablated = torch.empty((n, c), device=acts.device)
        for i in range(n):
            for start in range(0, c, batch_size):
                channels = torch.arange(start, min(start + batch_size, c), device=acts.device)
                batch = acts[i].expand(len(channels), *acts.shape[1:]).clone()
                batch[torch.arange(len(channels), device=acts.device), channels] = 0
                scores = step.adapter.replaced_scores(step.inputs[i : i + 1], step.layer, batch).to(acts.device)
                ablated[i, channels] = scores[:, step.targets[i]]
        step.notes.update({"ablation_engine": step.adapter.replacement_engine(step.layer), "ablated_forwards": n * c, "batch_size": batch_size})
        return (base[:, None] - ablated) / base[:, None]


@hookimpl
def register_explainers(register) -> None:
    register(AblationCam)
