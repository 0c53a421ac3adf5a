"""What a relevance propagation (LRP, excitation backprop) asks of a backend: which rule each
kind of layer takes, and where the relevance is read.

A ``Propagation`` is passed as the ``rule`` of ``ModelAdapter.rule_gradients``; the result's
``gradients`` are then the relevance itself (at the input, or at ``layer``'s output), not a
gradient. Rules (definitions in ``plugins/lrp.py`` and ``plugins/excitation_backprop.py``):
``epsilon``, ``gamma``, ``alpha2beta1``, ``alpha1beta0`` (LRP), ``excitation`` (excitation
backprop's marginal winning probability); first-layer rules ``zbox`` and ``flat``.
"""
from __future__ import annotations

from dataclasses import dataclass

LAYER_RULES = ("epsilon", "gamma", "alpha2beta1", "alpha1beta0", "excitation")
FIRST_RULES = ("zbox", "flat")


@dataclass(frozen=True)
class Propagation:
    """Rules per layer kind. ``conv`` and ``linear``: the rule of every convolution and linear
    layer; ``first``: a rule replacing it at the first one the forward pass calls (None: no
    special first layer); ``epsilon`` (epsilon rule), ``gamma`` (gamma rule), ``stabilizer``
    (added with the denominator's sign in the other rules); ``low``/``high``: the z-box bounds, a
    number or one per channel, None for each input's own per-channel minimum/maximum;
    ``merge_batchnorm``: a BatchNorm applied to a convolution's or linear layer's output is merged
    into it (canonized) before its rule applies, else it passes relevance unchanged; ``layer``:
    read the relevance at this module's output instead of the input; ``contrastive``: the
    relevance of the target minus that with the last layer's weights negated (contrastive
    excitation backprop); ``seed``: the relevance put on the target score, ``"score"`` (its
    value, so relevance sums to it) or ``"one"`` (1, a probability)."""

    conv: str = "epsilon"
    linear: str = "epsilon"
    first: str | None = None
    epsilon: float = 1e-6
    gamma: float = 0.25
    stabilizer: float = 1e-6
    low: float | tuple[float, ...] | None = None
    high: float | tuple[float, ...] | None = None
    merge_batchnorm: bool = True
    layer: str | None = None
    contrastive: bool = False
    seed: str = "score"

    def __post_init__(self) -> None:
        for rule in (self.conv, self.linear):
            if rule not in LAYER_RULES:
                raise ValueError(f"unknown layer rule '{rule}'; choose one of {', '.join(LAYER_RULES)}")
        if self.first is not None and self.first not in FIRST_RULES:
            raise ValueError(f"unknown first-layer rule '{self.first}'; choose one of {', '.join(FIRST_RULES)} or None")
        if self.seed not in ("score", "one"):
            raise ValueError(f"seed must be 'score' or 'one', not '{self.seed}'")
