"""ROAD: RemOve And Debias (Rong et al., ICML 2022), with noisy linear imputation."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from vexplain.core.adapter import FORWARD
from vexplain.core.errors import InvalidOption
from vexplain.core.engine_choice import engine_option
from vexplain.core.hookspecs import hookimpl
from vexplain.core.imputation import noisy_linear_impute
from vexplain.core.metric import EvaluationCase, Metric, MetricResult
from vexplain.core.metric_tools import relevance_ranks, target_probabilities
from vexplain.core.options import Option, integer, number, seed
from vexplain.core.perturbation import batch_options, derived_batch_size

DEFAULT_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
ORDERS = ("morf", "lerf")


def fractions(value: Any) -> tuple[float, ...]:
    """A non-empty sequence of fractions strictly between 0 and 1."""
    if isinstance(value, (list, tuple)) and value and all(
        isinstance(f, (int, float)) and not isinstance(f, bool) and 0 < f < 1 for f in value
    ):
        return tuple(float(f) for f in value)
    raise ValueError("must be a non-empty sequence of numbers strictly between 0 and 1")


def removed_pixels(ranks: torch.Tensor, fraction: float, order: str) -> np.ndarray:
    """bool ``(H*W,)``: the round(fraction · P) most relevant pixels (``morf``) or least relevant (``lerf``)."""
    pixels = ranks.numel()
    count = int(round(fraction * pixels))
    chosen = ranks < count if order == "morf" else ranks >= pixels - count
    return chosen.cpu().numpy()


class Road(Metric):
    """For each fraction f, remove the round(f · H · W) most relevant pixels (MoRF) or the least
    relevant (LeRF), impute them by noisy linear imputation (each removed pixel = weighted mean of
    its 8 neighbours, 1/6 direct and 1/12 diagonal, solved as one sparse system, plus N(0, noise²)),
    and record the target's score (the softmax probability of the explained class for class
    targets, a target object's own score otherwise). Values: ``morf`` and ``lerf``, the
    mean probability over the fractions (lower ``morf`` and higher ``lerf`` are better), and
    ``gap`` = lerf − morf (higher is better). Curves ``road_morf`` / ``road_lerf`` at x = fractions.

    Defaults: fractions 0.1 .. 0.9 in steps of 0.1, noise = 0.01 (in preprocessed units), seed = 0
    (the noise of image i, row r comes from ``default_rng([seed, i, r])``, so batching never
    changes it), batch_size from memory_mb = 1024, engine = 'auto'.
    """

    name = "road"
    requires = (FORWARD,)
    summary = "class probability after imputing the most (MoRF) or least (LeRF) relevant pixels away; gap = LeRF - MoRF (higher is better)"
    paper = "Rong et al., A Consistent and Efficient Evaluation Strategy for Attribution Methods, ICML 2022"
    headline = "gap"
    higher_is_better = True
    options = {
        "fractions": Option(DEFAULT_FRACTIONS, fractions, "fractions of pixels removed"),
        "noise": Option(0.01, number(minimum=0), "std of the Gaussian noise added to imputed values"),
        "seed": Option(0, seed(), "seed of the imputation noise, 0 .. 2**63 - 1"),
        **batch_options("imputed images per forward pass"),
        "engine": engine_option("forward", "which engine runs the imputed batches"),
    }

    def evaluate(self, case: EvaluationCase, options: dict[str, Any]) -> MetricResult:
        inputs = case.inputs
        n = len(inputs)
        device = inputs.device
        steps = options["fractions"]
        per_image = len(ORDERS) * len(steps)
        ranks = relevance_ranks(case.maps.to(device)).cpu()
        images = inputs.detach().cpu().numpy()
        height, width = inputs.shape[2:]
        for fraction in steps:
            if not 0 < round(fraction * height * width) < height * width:
                raise InvalidOption(f"road fraction {fraction} removes {round(fraction * height * width)} of {height * width} pixels; each fraction must remove some pixels and keep some")

        def impute(row: int) -> np.ndarray:
            image, within = divmod(row, per_image)
            order, step = divmod(within, len(steps))
            remove = removed_pixels(ranks[image], steps[step], ORDERS[order]).reshape(height, width)
            rng = np.random.default_rng([options["seed"], image, within])  # per row: threads and batches change nothing
            return noisy_linear_impute(images[image], remove, options["noise"], rng)

        def build(start: int, stop: int, out: torch.Tensor) -> torch.Tensor:
            for slot, imputed in enumerate(pool.map(impute, range(start, stop))):
                out[slot] = torch.from_numpy(imputed.astype(np.float32))
            return out

        batch_size = derived_batch_size(options, inputs.shape[1:])
        scorer = case.adapter.scorer(options["engine"], sample=inputs[:1])
        row_targets = case.targets.to(device).repeat_interleave(per_image)
        # the sparse solves dominate ROAD's cost and release the GIL: one per CPU at a time
        with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
            probabilities = target_probabilities(
                scorer, n * per_image, build, row_targets, batch_size, tuple(inputs.shape[1:]), device, self.name, case.class_targets
            ).view(n, len(ORDERS), len(steps)).numpy()
        morf, lerf = probabilities[:, 0], probabilities[:, 1]
        return MetricResult(
            values={"gap": lerf.mean(axis=1) - morf.mean(axis=1), "morf": morf.mean(axis=1), "lerf": lerf.mean(axis=1)},
            curves={"road_morf": morf, "road_lerf": lerf},
            curve_x={"road_morf": list(steps), "road_lerf": list(steps)},
            notes={"batch_size": batch_size, "engine": scorer.engine, **scorer.notes},
        )


@hookimpl
def register_metrics(register) -> None:
    register(Road)
