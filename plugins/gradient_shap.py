"""GradientShap: expected gradients over random baselines and path points (Lundberg & Lee, 2017)."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from vexplain.core.adapter import GRADIENTS, ModelAdapter
from vexplain.core.explainer import Attribution, Explainer
from vexplain.core.hookspecs import hookimpl
from vexplain.core.options import MAX_SAMPLES, integer, number, Option, seed
from vexplain.core.perturbation import batch_options, derived_batch_size
from vexplain.core.targets import TargetRequest

from ._baselines import BACKGROUND, images_or_number, reference_images
from ._gradient_maps import GRADIENT_MEMORY_FACTOR, channel_map, pair_chunks, reduction_options, request_for, resolve_targets


def draws(samples: int, references: int, stdev: float, shape: tuple[int, ...], seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(reference index (S,), noise (S, C, H, W), alpha (S,))`` for one image, the same for every
    image: ``numpy.random.RandomState(seed)`` draws the indices (``choice``) then the alphas
    (``uniform(0, 1)``), a ``torch.Generator`` seeded ``seed`` the noise (``torch.normal``) — the
    calls and order of Captum's ``GradientShap``, so one image explained here equals Captum on it
    after ``np.random.seed(seed); torch.manual_seed(seed)``."""
    state = np.random.RandomState(seed)
    index = torch.as_tensor(state.choice(references, samples), dtype=torch.long)
    noise = torch.zeros((samples, *shape))
    if stdev > 0:
        noise = torch.normal(0.0, torch.full((samples, *shape), stdev), generator=torch.Generator().manual_seed(seed))
    alpha = torch.as_tensor(state.uniform(0.0, 1.0, samples), dtype=torch.float32)
    return index, noise, alpha


class GradientShap(Explainer):
    """attributions = (1/S) Σ_s (x + ε_s − b_s) ⊙ ∂y_t/∂x(b_s + α_s (x + ε_s − b_s)) with, per sample
    s, a reference b_s drawn uniformly from the background, α_s ~ U(0, 1) and noise ε_s ~ N(0, stdev²):
    expected gradients, a sampled SHAP estimate; map = sum over channels (signed).

    Options (defaults): ``samples=50`` (Captum's ``n_samples``, default 5 there), ``stdev=0.0``
    (Captum's ``stdevs``), ``baselines=None`` (a number, images ``(M, C, H, W)``, or None:
    ``BACKGROUND`` = 16 N(0, 1) noise images in preprocessed units), ``seed=0``, ``batch_size``
    points per forward+backward pass (default derived from ``memory_mb=1024``), ``abs=False``,
    ``reduce="sum"``. Every image gets the same draws (see ``draws``), so batching changes nothing;
    a one-image call equals Captum's ``GradientShap`` seeded as ``draws`` says.
    """

    name = "gradient_shap"
    requires = (GRADIENTS,)
    summary = "mean over samples of (x + ε − b) ⊙ ∂y_t/∂x(b + α(x + ε − b)), b drawn from a background, α ~ U(0, 1): expected gradients"
    paper = "Lundberg & Lee, A Unified Approach to Interpreting Model Predictions, NeurIPS 2017"
    options = {
        "samples": Option(50, integer(1, maximum=MAX_SAMPLES), f"random (reference, α, noise) draws per image (at most {MAX_SAMPLES})"),
        "stdev": Option(0.0, number(minimum=0), "standard deviation of the Gaussian noise added to the input (preprocessed units)"),
        "baselines": Option(None, images_or_number(allow_none=True), f"background references: a number, images (M, C, H, W), or None ({BACKGROUND} N(0, 1) noise images)"),
        "seed": Option(0, seed(2**32 - 1), "seed (0 .. 2**32 - 1: numpy.random.RandomState, as Captum draws) of the draws (and of the default background)"),
        **batch_options("points per forward+backward pass"),
        **reduction_options(abs_default=False, reduce_default="sum"),
    }

    def attribute(self, adapter: ModelAdapter, inputs: torch.Tensor, targets: TargetRequest, options: dict[str, Any]) -> Attribution:
        references = reference_images(options["baselines"], inputs, options["seed"], "baselines")
        index, noise, alpha = (t.to(inputs.device) for t in draws(options["samples"], len(references), options["stdev"], tuple(inputs.shape[1:]), options["seed"]))
        scores, chosen = resolve_targets(adapter, inputs, targets)
        batch_size = derived_batch_size(options, inputs.shape[1:], GRADIENT_MEMORY_FACTOR)
        total = torch.zeros(inputs.shape, dtype=torch.float64, device=inputs.device)
        for image, sample in pair_chunks(len(inputs), options["samples"], batch_size, inputs.device):
            noisy, reference = inputs[image] + noise[sample].to(inputs.dtype), references[index[sample]]
            points = alpha[sample].view(-1, 1, 1, 1) * noisy + (1.0 - alpha[sample].view(-1, 1, 1, 1)) * reference
            gradients = adapter.gradients(points, request_for(chosen[image]), batch_size=len(points)).gradients.to(inputs.device)
            total.index_add_(0, image, ((noisy - reference) * gradients).double())
        values = (total / options["samples"]).to(inputs.dtype)
        notes = {"batch_size": batch_size, "references": len(references)}
        return Attribution(maps=channel_map(values, options), scores=scores, targets=chosen, attributions=values, notes=notes)


@hookimpl
def register_explainers(register) -> None:
    register(GradientShap)
