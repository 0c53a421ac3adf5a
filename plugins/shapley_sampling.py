"""Shapley value sampling over superpixels (Castro, Gómez & Tejada, 2009; Štrumbelj & Kononenko, 2010)."""
from __future__ import annotations

from typing import Any

import torch

from vexplain.core.adapter import FORWARD, ModelAdapter
from vexplain.core.explainer import Attribution, Explainer
from vexplain.core.hookspecs import hookimpl
from vexplain.core.options import MAX_SAMPLES, integer, Option, seed
from vexplain.core.targets import TargetRequest

from ._features import CoalitionScorer, feature_options, notes_of, painted, prepared
from ._superpixels import feature_labels


def shapley_estimate(coalitions: CoalitionScorer, samples: int, seed: int) -> torch.Tensor:
    """φ ``(F,)``: for each of ``samples`` permutations π (``torch.randperm(F)`` from a generator
    seeded ``seed``, Captum's draws), start from all features removed and add them in π's order;
    φ_f averages the score's change when f is added."""
    features, device = coalitions.features, coalitions.image.device
    generator = torch.Generator().manual_seed(seed)
    perms = torch.stack([torch.randperm(features, generator=generator) for _ in range(samples)]).to(device)  # (S, F)
    rank = torch.empty_like(perms).scatter_(1, perms, torch.arange(features, device=device).expand(samples, -1))
    steps = torch.arange(1, features + 1, device=device)
    rows = (rank[:, None, :] < steps[None, :, None]).reshape(samples * features, features)  # prefixes of each π
    empty = coalitions.run(torch.zeros((1, features), device=device))
    values = coalitions.run(rows.double()).reshape(samples, features)
    gains = values - torch.cat([empty.expand(samples, 1), values[:, :-1]], dim=1)
    phi = torch.zeros(features, dtype=torch.float64, device=device)
    phi.index_add_(0, perms.reshape(-1), gains.reshape(-1))
    return phi / samples


class ShapleySampling(Explainer):
    """φ_f = E_π[y_t(x_{S_π,f ∪ {f}}) − y_t(x_{S_π,f})], S_π,f the features before f in a random
    order π and x_S the image with only the features of S kept (the others at ``baseline``):
    Shapley values estimated from ``samples`` permutations; every pixel of f gets φ_f. The φ sum to
    y_t(x) − y_t(all at baseline) for each permutation, so exactly for the estimate.

    Options (defaults): ``samples=25`` permutations (Captum's default; cost samples·F + 1 forward
    passes per image: 1601 at 8 × 8 cells), ``seed=0`` (the same permutations for every image),
    superpixel and engine options as ``feature_ablation`` (``segments="grid"``, ``cells=8``,
    ``baseline=0.0``, ``engine="auto"``, ``batch_size`` from ``memory_mb=1024``). Forward passes
    only. Equals Captum's ``ShapleyValueSampling`` with the same mask after ``torch.manual_seed(seed)``.
    """

    name = "shapley_sampling"
    aliases = ('shapley_value_sampling',)
    requires = (FORWARD,)
    summary = "mean over random orders of the score change when superpixel f joins the features before it: sampled Shapley values"
    paper = "Castro, Gómez & Tejada, Polynomial calculation of the Shapley value based on sampling, Computers & OR 2009"
    options = {
        "samples": Option(25, integer(1, maximum=MAX_SAMPLES), f"random feature orders (permutations) (at most {MAX_SAMPLES})"),
        "seed": Option(0, seed(), "seed (0 .. 2**63 - 1) of the permutations"),
        **feature_options(),
    }

    def attribute(self, adapter: ModelAdapter, inputs: torch.Tensor, targets: TargetRequest, options: dict[str, Any]) -> Attribution:
        scorer, scores, chosen, batch_size = prepared(adapter, inputs, targets, options, self.name, options["samples"] * options["cells"] ** 2)
        labels = feature_labels(inputs, options)
        values = [
            shapley_estimate(CoalitionScorer(scorer, image, label, options["baseline"], chosen[n], batch_size), options["samples"], options["seed"])
            for n, (image, label) in enumerate(zip(inputs, labels))
        ]
        return Attribution(maps=painted(values, labels), scores=scores, targets=chosen, notes=notes_of(scorer, batch_size, labels))


@hookimpl
def register_explainers(register) -> None:
    register(ShapleySampling)
