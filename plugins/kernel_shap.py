"""KernelSHAP over superpixels (Lundberg & Lee, 2017)."""
from __future__ import annotations

from typing import Any

import torch

from vexplain.core.adapter import FORWARD, ModelAdapter
from vexplain.core.errors import InvalidOption
from vexplain.core.explainer import Attribution, Explainer
from vexplain.core.hookspecs import hookimpl
from vexplain.core.options import MAX_SAMPLES, integer, Option, seed
from vexplain.core.targets import TargetRequest

from ._features import CoalitionScorer, feature_options, notes_of, painted, prepared
from ._superpixels import feature_labels
from ._surrogate import least_squares

#: weight of the full and the empty coalition, which pins the fit to y(x) and y(baseline) (Captum's)
ENDPOINT_WEIGHT = 1e6


def kernel_coalitions(features: int, samples: int, seed: int) -> torch.Tensor:
    """``(samples, F)`` 0/1 coalitions: all features, none, then coalitions whose size k is drawn
    with p(k) ∝ (F − 1) / (k (F − k)) and whose members are the k largest of F normal draws —
    sampling by the Shapley kernel, so each gets weight 1. Captum's draws (``multinomial``, then
    ``randn``, per sample) from a generator seeded ``seed``."""
    if features < 2:
        raise InvalidOption(f"kernel_shap needs at least 2 features; the segmentation gave {features}: use more cells")
    generator = torch.Generator().manual_seed(seed)
    sizes = torch.arange(features, dtype=torch.float32)
    probs = torch.tensor(features - 1) / (sizes * (features - sizes))
    probs[0] = 0.0
    probs = (probs / probs.sum()).reshape(1, -1)
    rows = [torch.ones(1, features), torch.zeros(1, features)]
    for _ in range(samples - 2):
        size = int(torch.multinomial(probs, 1, True, generator=generator))
        values = torch.randn((1, features), generator=generator)
        threshold = torch.kthvalue(values, features - size).values.item()
        rows.append((values > threshold).float())
    return torch.cat(rows)[:samples]


class KernelShap(Explainer):
    """φ = the coefficients β of the weighted linear fit y_t(x_z) ≈ z·β + b over coalitions z ∈ {0,1}^F
    (x_z: the image with the features z keeps, the others at ``baseline``), coalitions sampled from
    the Shapley kernel (``kernel_coalitions``), the full and empty ones weighted ``ENDPOINT_WEIGHT``
    so that Σ φ ≈ y_t(x) − y_t(baseline): the KernelSHAP estimate of Shapley values; every pixel
    of feature f gets φ_f.

    Options (defaults): ``samples=512`` coalitions (Captum's default is 25, fewer than the 64
    features of the default grid, which leaves the fit underdetermined), ``seed=0`` (the same
    coalitions for every image with the same feature count), superpixel and engine options as
    ``feature_ablation`` (``segments="grid"``, ``cells=8``, ``baseline=0.0``, ``engine="auto"``,
    ``batch_size`` from ``memory_mb=1024``). Forward passes only. Equals Captum's ``KernelShap``
    (scikit-learn ``LinearRegression``) with the same mask after ``torch.manual_seed(seed)``.
    """

    name = "kernel_shap"
    requires = (FORWARD,)
    summary = "weighted linear fit of the scores of random superpixel coalitions, drawn by the Shapley kernel: estimated Shapley values"
    paper = "Lundberg & Lee, A Unified Approach to Interpreting Model Predictions, NeurIPS 2017"
    options = {
        "samples": Option(512, integer(2, maximum=MAX_SAMPLES), f"coalitions (perturbed inputs) per image, the full and empty ones included (at most {MAX_SAMPLES})"),
        "seed": Option(0, seed(), "seed (0 .. 2**63 - 1) of the coalitions"),
        **feature_options(),
    }

    def attribute(self, adapter: ModelAdapter, inputs: torch.Tensor, targets: TargetRequest, options: dict[str, Any]) -> Attribution:
        scorer, scores, chosen, batch_size = prepared(adapter, inputs, targets, options, self.name, options["samples"])
        labels = feature_labels(inputs, options)
        values = []
        for n, (image, label) in enumerate(zip(inputs, labels)):
            coalitions = CoalitionScorer(scorer, image, label, options["baseline"], chosen[n], batch_size)
            z = kernel_coalitions(coalitions.features, options["samples"], options["seed"])
            weights = torch.ones(len(z), dtype=torch.float64)
            weights[(z.sum(1) == 0) | (z.sum(1) == coalitions.features)] = ENDPOINT_WEIGHT
            values.append(least_squares(z, coalitions.run(z), weights))
        return Attribution(maps=painted(values, labels), scores=scores, targets=chosen, notes=notes_of(scorer, batch_size, labels))


@hookimpl
def register_explainers(register) -> None:
    register(KernelShap)
