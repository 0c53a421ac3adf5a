"""LIME over superpixels (Ribeiro, Singh & Guestrin, 2016)."""
from __future__ import annotations

from typing import Any

import torch

from vexplain.core.adapter import FORWARD, ModelAdapter
from vexplain.core.explainer import Attribution, Explainer
from vexplain.core.hookspecs import hookimpl
from vexplain.core.notices import warn
from vexplain.core.options import MAX_SAMPLES, integer, number, Option, seed
from vexplain.core.targets import TargetRequest

from ._features import CoalitionScorer, feature_options, notes_of, painted, prepared
from ._superpixels import feature_labels
from ._surrogate import lasso


def lime_coalitions(features: int, samples: int, seed: int) -> torch.Tensor:
    """``(samples, F)`` coalitions, each feature kept with probability ½: one ``torch.bernoulli``
    draw of a ``(1, F)`` row per sample from a generator seeded ``seed`` (Captum's draws)."""
    generator = torch.Generator().manual_seed(seed)
    half = torch.full((1, features), 0.5)
    return torch.cat([torch.bernoulli(half, generator=generator) for _ in range(samples)])


def cosine_weights(image: torch.Tensor, labels: torch.Tensor, z: torch.Tensor, baseline: float, width: float) -> torch.Tensor:
    """exp(−d² / (2 width²)) with d = 1 − cos(x, x_z) between the flattened image and each
    perturbed image (Captum's default LIME kernel), in float64 from per-feature sums: with
    A_f = Σ_{i∈f} x_i², B_f = Σ_{i∈f} x_i and n_f the element count of feature f (all channels),
    x·x_z = Σ_f z_f A_f + (1 − z_f) b B_f and |x_z|² = Σ_f z_f A_f + (1 − z_f) b² n_f."""
    flat, index = image.double().reshape(len(image), -1), labels.reshape(-1).expand(len(image), -1).reshape(-1)
    features = int(labels.max()) + 1
    sums = torch.zeros((3, features), dtype=torch.float64, device=image.device)
    values = flat.reshape(-1)
    for row, data in enumerate((values * values, values, torch.ones_like(values))):
        sums[row].index_add_(0, index, data)
    squares, totals, counts = sums
    kept = z.to(image.device, torch.float64)
    dot = kept @ squares + (1 - kept) @ (baseline * totals)
    norm = kept @ squares + (1 - kept) @ (baseline * baseline * counts)
    cosine = dot / (squares.sum().sqrt() * norm.sqrt()).clamp_min(1e-8)
    return torch.exp(-((1.0 - cosine) ** 2) / (2 * width**2)).cpu()


class Lime(Explainer):
    """φ = the coefficients β of the sparse weighted linear fit of y_t(x_z) ≈ z·β + b over random
    coalitions z (each superpixel kept with probability ½, the others at ``baseline``), weighted by
    the exponential kernel of the cosine distance between x and x_z and fitted by the lasso
    (``_surrogate.lasso``, penalty ``alpha``): a local linear surrogate; every pixel of feature f
    gets φ_f.

    Options (defaults): ``samples=512`` coalitions (Captum's default 50 is fewer than the 64
    features of the default grid), ``seed=0``, ``kernel_width=1.0``, ``alpha=0.01`` (Captum's
    ``SkLearnLasso(alpha=0.01)``; 0 gives weighted least squares), superpixel and engine options
    as ``feature_ablation`` (``segments="grid"``, ``cells=8``, ``baseline=0.0``, ``engine="auto"``,
    ``batch_size`` from ``memory_mb=1024``). Forward passes only. Equals Captum's ``Lime`` with
    the same mask after ``torch.manual_seed(seed)``, with its lasso run to convergence.
    """

    name = "lime"
    requires = (FORWARD,)
    summary = "lasso fit of the scores of random superpixel coalitions, weighted by closeness to the image: a local linear surrogate"
    paper = "Ribeiro, Singh & Guestrin, \"Why Should I Trust You?\": Explaining the Predictions of Any Classifier, KDD 2016"
    options = {
        "samples": Option(512, integer(1, maximum=MAX_SAMPLES), f"random coalitions (perturbed inputs) per image (at most {MAX_SAMPLES})"),
        "seed": Option(0, seed(), "seed (0 .. 2**63 - 1) of the coalitions"),
        "kernel_width": Option(1.0, number(above=0), "width of the exponential kernel on the cosine distance"),
        "alpha": Option(0.01, number(minimum=0), "lasso penalty of the surrogate (0: least squares)"),
        **feature_options(),
    }

    def attribute(self, adapter: ModelAdapter, inputs: torch.Tensor, targets: TargetRequest, options: dict[str, Any]) -> Attribution:
        scorer, scores, chosen, batch_size = prepared(adapter, inputs, targets, options, self.name, options["samples"])
        labels = feature_labels(inputs, options)
        values = []
        for n, (image, label) in enumerate(zip(inputs, labels)):
            coalitions = CoalitionScorer(scorer, image, label, options["baseline"], chosen[n], batch_size)
            z = lime_coalitions(coalitions.features, options["samples"], options["seed"])
            weights = cosine_weights(image, label, z, options["baseline"], options["kernel_width"])
            values.append(lasso(z, coalitions.run(z), weights, options["alpha"]))
            if options["alpha"] > 0 and not bool(values[-1].any()):
                warn(f"lime: the lasso (alpha={options['alpha']:g}) set every coefficient of image {n} to 0, so its map is constant; lower alpha")
        return Attribution(maps=painted(values, labels), scores=scores, targets=chosen, notes=notes_of(scorer, batch_size, labels))


@hookimpl
def register_explainers(register) -> None:
    register(Lime)
