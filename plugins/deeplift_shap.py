"""DeepLiftShap: DeepLift averaged over a background of references (Lundberg & Lee, 2017)."""
from __future__ import annotations

from typing import Any

import torch

from vexplain.core.adapter import RULE_GRADIENTS, ModelAdapter
from vexplain.core.explainer import Attribution, Explainer
from vexplain.core.hookspecs import hookimpl
from vexplain.core.options import integer, Option, seed
from vexplain.core.perturbation import batch_options, derived_batch_size
from vexplain.core.targets import TargetRequest

from ._baselines import BACKGROUND, images_or_number, reference_images
from ._gradient_maps import GRADIENT_MEMORY_FACTOR, channel_map, reduction_options, resolve_targets
from .deeplift import completeness_gap, deeplift_sum


class DeepLiftShap(Explainer):
    """attributions = (1/M) Σ_j (x − b_j) ⊙ m(x, b_j): DeepLift (rescale rule, see ``deeplift``)
    against each of M background references b_j, averaged, which approximates SHAP values under
    the background distribution; map = sum over channels (signed).

    Options (defaults): ``baselines=None`` (the background: a number — one constant image — or
    images ``(M, C, H, W)``; None draws ``BACKGROUND`` = 16 images of N(0, 1) noise, in
    preprocessed units, from ``seed=0``), ``batch_size`` (input, reference) pairs per
    forward+backward pass (default derived from ``memory_mb=1024``), ``abs=False``, ``reduce="sum"``.
    ``exp.options["completeness_gap"]`` holds per image Σ attributions − mean_j (y_t(x) − y_t(b_j)).
    Equals Captum's ``DeepLiftShap`` with the same baselines.
    """

    name = "deeplift_shap"
    requires = (RULE_GRADIENTS,)
    summary = "(1/M) Σ_j Σ_c (x − b_j) ⊙ m(x, b_j): DeepLift averaged over a background of references, approximating SHAP values"
    paper = "Lundberg & Lee, A Unified Approach to Interpreting Model Predictions, NeurIPS 2017"
    options = {
        "baselines": Option(None, images_or_number(allow_none=True), f"background references: a number, images (M, C, H, W), or None ({BACKGROUND} N(0, 1) noise images)"),
        "seed": Option(0, seed(), "seed (0 .. 2**63 - 1) of the default noise background"),
        **batch_options("(input, reference) pairs per forward+backward pass"),
        **reduction_options(abs_default=False, reduce_default="sum"),
    }

    def attribute(self, adapter: ModelAdapter, inputs: torch.Tensor, targets: TargetRequest, options: dict[str, Any]) -> Attribution:
        references = reference_images(options["baselines"], inputs, options["seed"], "baselines")
        scores, chosen = resolve_targets(adapter, inputs, targets)
        batch_size = derived_batch_size(options, inputs.shape[1:], 2 * GRADIENT_MEMORY_FACTOR)
        values = (deeplift_sum(adapter, inputs, references, chosen, batch_size) / len(references)).to(inputs.dtype)
        notes = {"batch_size": batch_size, "references": len(references), "completeness_gap": completeness_gap(adapter, values, scores, references, chosen)}
        return Attribution(maps=channel_map(values, options), scores=scores, targets=chosen, attributions=values, notes=notes)


@hookimpl
def register_explainers(register) -> None:
    register(DeepLiftShap)
