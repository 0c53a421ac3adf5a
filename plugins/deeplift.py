"""DeepLift with the rescale rule (Shrikumar, Greenside & Kundaje, 2017)."""
from __future__ import annotations

from typing import Any

import torch

from vexplain.core.adapter import RULE_GRADIENTS, ModelAdapter
from vexplain.core.errors import InvalidOption
from vexplain.core.explainer import Attribution, Explainer
from vexplain.core.hookspecs import hookimpl
from vexplain.core.options import Option
from vexplain.core.perturbation import batch_options, derived_batch_size
from vexplain.core.targets import TargetRequest, gather_scores

from ._baselines import images_or_number, reference_images
from ._gradient_maps import GRADIENT_MEMORY_FACTOR, channel_map, pair_chunks, reduction_options, request_for, resolve_targets


def deeplift_sum(
    adapter: ModelAdapter, inputs: torch.Tensor, references: torch.Tensor, chosen: torch.Tensor, batch_size: int
) -> torch.Tensor:
    """Σ_j (x − b_j) ⊙ m(x, b_j) over the references b_j, per input ``(N, C, H, W)`` in float64, m the
    rescale-rule multipliers; (input, reference) pairs run in batches of ``batch_size`` (each pair is
    two rows of the model's batch)."""
    device = inputs.device
    total = torch.zeros(inputs.shape, dtype=torch.float64, device=device)
    for image, sample in pair_chunks(len(inputs), len(references), batch_size, device):
        x, reference = inputs[image], references[sample]
        multipliers = adapter.rule_gradients(x, request_for(chosen[image]), "rescale", references=reference, batch_size=len(x)).gradients
        total.index_add_(0, image, ((x - reference) * multipliers.to(device)).double())
    return total


def completeness_gap(
    adapter: ModelAdapter, values: torch.Tensor, scores: torch.Tensor, references: torch.Tensor, chosen: torch.Tensor
) -> list[float]:
    """Per input Σ attributions − mean_j (y_t(x) − y_t(b_j)): DeepLift's summation-to-delta, which
    the rescale rule satisfies exactly up to rounding (Captum's convergence delta)."""
    reference_scores = adapter.forward(references).to(values.device)
    rise = gather_scores(scores, chosen).double() - reference_scores.double()[:, chosen].mean(dim=0)
    return (values.double().sum(dim=(1, 2, 3)) - rise).tolist()


class DeepLift(Explainer):
    """attributions = (x − b) ⊙ m, m the DeepLift multipliers of y_t w.r.t. x against the reference
    image b: the chain rule with every nonlinearity's derivative replaced by Δy/Δz between the
    input's and the reference's forward passes (the rescale rule; see ``adapters/torch_rules``),
    so Σ attributions = y_t(x) − y_t(b) ("summation to delta"); map = sum over channels (signed).

    Options (defaults): ``baseline=0.0`` (a number: the constant reference image, in preprocessed
    units; or one image ``(C, H, W)``), ``batch_size`` inputs per forward+backward pass (each runs
    with its reference, so the model sees twice as many rows; default derived from ``memory_mb=1024``),
    ``abs=False``, ``reduce="sum"``. ``exp.options["completeness_gap"]`` holds per image
    Σ attributions − (y_t(x) − y_t(b)). Equals Captum's ``DeepLift`` (rescale rule, eps 1e-10) on
    models with ReLU, sigmoid, tanh, ELU, LeakyReLU, Softplus and non-overlapping max pooling, and
    works on models that call one ``nn.ReLU`` twice (ResNet blocks), which Captum refuses. Where a
    nonlinearity module feeds a max-pooling module directly (ResNet's stem: ReLU → MaxPool),
    Captum's hooks break summation to delta (its convergence delta O(1e-3) on a small CNN) and
    vexplain keeps it, so the two differ there. GELU and SiLU also get the rescale rule (Captum
    leaves their gradient unchanged).
    """

    name = "deeplift"
    requires = (RULE_GRADIENTS,)
    summary = "Σ_c (x − b) ⊙ m: multipliers m by the chain rule with each nonlinearity's derivative replaced by Δy/Δz against a reference b"
    paper = "Shrikumar, Greenside & Kundaje, Learning Important Features Through Propagating Activation Differences, ICML 2017"
    options = {
        "baseline": Option(0.0, images_or_number(allow_none=False), "the reference: a number (constant image) or one image (C, H, W)"),
        **batch_options("inputs per forward+backward pass (each with its reference)"),
        **reduction_options(abs_default=False, reduce_default="sum"),
    }

    def attribute(self, adapter: ModelAdapter, inputs: torch.Tensor, targets: TargetRequest, options: dict[str, Any]) -> Attribution:
        references = reference_images(options["baseline"], inputs, 0, "baseline")
        if len(references) != 1:
            raise InvalidOption(f"option 'baseline' of method 'deeplift' takes one reference image; got {len(references)}: use deeplift_shap for a set of references")
        scores, chosen = resolve_targets(adapter, inputs, targets)
        batch_size = derived_batch_size(options, inputs.shape[1:], 2 * GRADIENT_MEMORY_FACTOR)
        values = deeplift_sum(adapter, inputs, references, chosen, batch_size).to(inputs.dtype)
        notes = {"batch_size": batch_size, "completeness_gap": completeness_gap(adapter, values, scores, references, chosen)}
        return Attribution(maps=channel_map(values, options), scores=scores, targets=chosen, attributions=values, notes=notes)


@hookimpl
def register_explainers(register) -> None:
    register(DeepLift)
