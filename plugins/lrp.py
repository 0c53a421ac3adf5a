"""Layer-wise relevance propagation (Bach et al., 2015; Montavon et al., 2019), with Zennit's
named composites.

Decision: built on vexplain's own rule engine (``adapters/torch_lrp``), with Zennit 0.5.1 as the
test-time reference (``tests/test_methods_lrp.py`` agrees with its composites to 1e-6), not on
Zennit as a dependency. Read from Zennit 0.5.1:

* it attaches rules as forward and backward hooks on every module, and each rule's backward swaps
  the module's parameters for the modified ones in place (``ParamMod``) while it runs; its
  canonizers merge BatchNorm into the preceding convolution by overwriting the convolution's
  weights and the BatchNorm's statistics until they are removed. During a call the model is
  modified, so another thread using the same model (``core/concurrency.py`` lets threads share
  one) computes with wrong weights, and the model is restored only when every context exits
  cleanly. vexplain's engine is a thread-local ``TorchFunctionMode``: no hook, no parameter
  touched, nothing to restore when the call raises; BatchNorm is merged per call, by dataflow
  (a BatchNorm fed by a convolution's output), not by module order.
* it finds the first layer and the residual sums by module type and order (ResNets need its
  ``ResNetCanonizer``, which rewrites the blocks' ``forward``); the engine sees the calls the
  forward pass makes, so functional layers, ``out += identity`` and modules called twice are
  covered without model-specific canonizers.
* it imports torchvision at import time (which fails beside the CPU torch build here; see
  DESIGN.md), and its last release is from 2023.
* speed: its gamma and alpha-beta rules run 4-5 modified forward passes and as many backward
  passes per layer; the engine skips the terms that are zero (no negative inputs after a ReLU)
  and uses the transposed convolution directly for the epsilon rule (``benchmarks/README.md``).
* TorchScript and ONNX: neither library can change a compiled graph's backward pass; both
  refuse such models (here with a typed ``UnsupportedCapability``).
"""
from __future__ import annotations

from typing import Any

import torch

from vexplain.core.adapter import RULE_GRADIENTS, ModelAdapter
from vexplain.core.explainer import Attribution, Explainer
from vexplain.core.hookspecs import hookimpl
from vexplain.core.options import Option, choice, number, optional
from vexplain.core.perturbation import batch_options, derived_batch_size
from vexplain.core.propagation import Propagation
from vexplain.core.targets import TargetRequest

from ._gradient_maps import GRADIENT_MEMORY_FACTOR, channel_map, reduction_options

#: composite name → (convolution rule, linear rule, first-layer rule), as Zennit's composites
COMPOSITES: dict[str, tuple[str, str, str | None]] = {
    "epsilon_plus_flat": ("alpha1beta0", "epsilon", "flat"),
    "epsilon_gamma_box": ("gamma", "epsilon", "zbox"),
    "epsilon_alpha2_beta1": ("alpha2beta1", "epsilon", None),
    "epsilon": ("epsilon", "epsilon", None),
    "gamma": ("gamma", "gamma", None),
    "alpha2beta1": ("alpha2beta1", "alpha2beta1", None),
    "alpha1beta0": ("alpha1beta0", "alpha1beta0", None),
}


def bounds(value: Any) -> Any:
    """None, a number, or a list of numbers (one per channel)."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError("must be a number or a non-empty list of numbers (one per channel)")
        return tuple(number()(v) for v in value)
    return number()(value)


class LRP(Explainer):
    """Layer-wise relevance propagation: the target score y_t is the relevance at the output and
    each layer z = Wx + b redistributes its output relevance R onto its inputs by a rule; the
    attributions are the relevance at the input pixels ``(N, C, H, W)``; map = sum over channels
    (signed). With s = R / stab(·) and stab(t) = t + ε·sign(t) (sign(0) = 1):

    * ``epsilon``: R_x = x ⊙ Wᵀ(R / stab_ε(z)); ε → 0 on a bias-free ReLU network conserves
      relevance (Σ R_x = y_t).
    * ``gamma``: W + γW⁺ (and b + γb⁺) for outputs z > 0, W + γW⁻ for z < 0, Zennit's
      generalized form (for x ≥ 0 it is Montavon et al.'s gamma rule).
    * ``alpha2beta1``, ``alpha1beta0``: R_x = α·(positive contributions' share) − β·(negative
      contributions' share), x⁺ with W⁺ and x⁻ with W⁻ positive (Bach et al.); ``alpha1beta0`` is
      Zennit's ``ZPlus``.
    * first layer: ``zbox`` (x ∈ [low, high]: R_x = x ⊙ Wᵀs − low ⊙ W⁺ᵀs − high ⊙ W⁻ᵀs with
      z = Wx − W⁺low − W⁻high) or ``flat`` (every input of an output's receptive field gets an
      equal share).

    Option ``composite`` (default ``epsilon_plus_flat``): ``epsilon_plus_flat`` (convolutions
    alpha1beta0, linear layers epsilon, first layer flat; Zennit's ``EpsilonPlusFlat``, the
    recommendation of Kohlbrenner et al. 2020), ``epsilon_gamma_box`` (convolutions gamma, linear
    epsilon, first z-box; ``EpsilonGammaBox``), ``epsilon_alpha2_beta1`` (convolutions
    alpha2beta1, linear epsilon; ``EpsilonAlpha2Beta1``), or one rule for every layer:
    ``epsilon`` (Captum's ``LRP`` default), ``gamma``, ``alpha2beta1``, ``alpha1beta0``.
    ``epsilon=1e-6`` (Zennit's default; Captum's is 1e-9), ``gamma=0.25``, ``low``/``high``
    (z-box bounds in preprocessed units: a number or one per channel; default None, each input's
    own per-channel minimum and maximum), ``stabilizer=1e-6`` (Zennit's: added with the sign to
    the gamma, alpha-beta, z-box and flat rules' denominators), ``batch_size`` inputs per pass
    (default derived from ``memory_mb=1024``), ``abs=False``, ``reduce="sum"``. ``exp.options["relevance_sum"]`` is Σ R_x per input, to compare with y_t.

    Layers: BatchNorm after a convolution or linear layer is merged into it first; residual sums
    split relevance in proportion to each term, average pooling in proportion to its inputs, max
    pooling gives it to the winner; activations pass it unchanged (``adapters/torch_lrp``). The
    relevance at the output is y_t (Captum's convention; Zennit's equals it when given
    ``one_hot · y_t``). Residual sums and average pooling take the z-rule unstabilized, where
    Zennit's ``Norm`` adds its stabilizer (1e-6): where a sum is near 0 the two differ (by up to
    2e-4 of the largest relevance on the tests' CNN; 3e-6 with ``stabilizer`` 1e-12 on both).
    Zennit applies EpsilonGammaBox's z-box to the first convolution only, vexplain to the first
    convolution or linear layer. Equals Zennit's composites with ``SequentialMergeBatchNorm`` on models
    with convolutions, BatchNorm, ReLU, pooling and ``zennit.layer.Sum`` residuals, and Captum's
    ``LRP`` with epsilon rules where Captum supports the layers.
    """

    name = "lrp"
    aliases = ("layerwise_relevance_propagation",)
    requires = (RULE_GRADIENTS,)
    summary = "Σ_c relevance at the input: y_t redistributed layer by layer by LRP rules (Zennit's composites: epsilon, gamma, alpha-beta, z-box, flat)"
    paper = "Bach et al., On Pixel-Wise Explanations for Non-Linear Classifier Decisions by Layer-Wise Relevance Propagation, PLoS ONE 2015"
    options = {
        "composite": Option("epsilon_plus_flat", choice(*COMPOSITES), "rules per layer: " + ", ".join(COMPOSITES)),
        "epsilon": Option(1e-6, number(minimum=0), "the epsilon rule's stabilizer"),
        "gamma": Option(0.25, number(minimum=0), "the gamma rule's weight on positive parameters"),
        "stabilizer": Option(1e-6, number(minimum=0), "added with the sign to the gamma, alpha-beta, z-box and flat rules' denominators"),
        "low": Option(None, bounds, "z-box lower bound: a number or one per channel; default each input's per-channel minimum"),
        "high": Option(None, bounds, "z-box upper bound: a number or one per channel; default each input's per-channel maximum"),
        **batch_options("inputs per forward+backward pass"),
        **reduction_options(abs_default=False, reduce_default="sum"),
    }

    def attribute(self, adapter: ModelAdapter, inputs: torch.Tensor, targets: TargetRequest, options: dict[str, Any]) -> Attribution:
        conv, linear, first = COMPOSITES[options["composite"]]
        spec = Propagation(conv=conv, linear=linear, first=first, epsilon=options["epsilon"], gamma=options["gamma"], stabilizer=options["stabilizer"], low=options["low"], high=options["high"])
        batch_size = derived_batch_size(options, inputs.shape[1:], GRADIENT_MEMORY_FACTOR)
        result = adapter.rule_gradients(inputs, targets, spec, batch_size=batch_size)
        values = result.gradients.to(inputs.device)
        notes = {"batch_size": batch_size, "relevance_sum": values.double().sum(dim=tuple(range(1, values.dim()))).tolist()}
        return Attribution(maps=channel_map(values, options), scores=result.scores, targets=result.targets, attributions=values, notes=notes)


@hookimpl
def register_explainers(register) -> None:
    register(LRP)
