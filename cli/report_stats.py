"""What the evaluation report says about its numbers: which methods are best (ties alike), the
units of each curve's axes, and where a method is within noise of the random baseline."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from vexplain import MetricInfo

from .evaluate_run import RANDOM_BASELINE, MethodRun

SHOWN_DECIMALS = 3  # the summary table's precision: values that print alike are tied
NOISE_SE = 2.0  # "within noise": |mean paired difference| ≤ 2 standard errors (≈ 95 %)


def best_rows(runs: Sequence[MethodRun], metrics: Sequence[MetricInfo]) -> dict[int, set[int]]:
    """Column → the row indices of every method whose headline mean equals the best one as shown
    (rounded to ``SHOWN_DECIMALS``): tied methods are highlighted alike."""
    best: dict[int, set[int]] = {}
    for c, metric in enumerate(metrics, start=1):
        scored = [
            (r, round(float(run.evaluations[metric.name].summary()[metric.headline]), SHOWN_DECIMALS))
            for r, run in enumerate(runs)
            if metric.name in run.evaluations
        ]
        scored = [(r, v) for r, v in scored if math.isfinite(v)]
        if scored:
            top = (max if metric.higher_is_better else min)(v for _, v in scored)
            best[c] = {r for r, v in scored if v == top}
    return best


def axis_labels(curve: str, numeric_x: bool) -> tuple[str, str]:
    """(x label, y label) with units for a metric curve: deletion, insertion and ROAD plot the
    target's probability against the fraction of pixels changed; randomization plots a similarity
    to the original map against the number of layers randomised."""
    if not numeric_x:
        similarity = "SSIM" if curve == "ssim" else "Spearman ρ" if curve.startswith("spearman") else curve
        return "layers randomised from the output (count)", f"{similarity} with the original map (−1 to 1)"
    return "fraction of pixels changed (0 to 1)", "target probability (0 to 1)"


def noise_notes(runs: Sequence[MethodRun], metrics: Sequence[MetricInfo]) -> list[str]:
    """One line per (method, metric) whose headline is within noise of the random baseline's on
    the same images: |mean(d)| ≤ ``NOISE_SE`` · sd(d)/√n for the per-image differences d (n ≥ 2)."""
    baseline = next((run for run in runs if run.name == RANDOM_BASELINE), None)
    if baseline is None:
        return []
    notes = []
    for metric in metrics:
        if metric.name not in baseline.evaluations:
            continue
        reference = np.asarray(baseline.evaluations[metric.name].values[metric.headline], dtype=np.float64)
        for run in runs:
            if run is baseline or metric.name not in run.evaluations:
                continue
            values = np.asarray(run.evaluations[metric.name].values[metric.headline], dtype=np.float64)
            if values.shape != reference.shape or values.size < 2:
                continue
            difference = values - reference
            if not np.isfinite(difference).all():
                continue
            margin = NOISE_SE * float(difference.std(ddof=1)) / math.sqrt(difference.size)
            mean = float(difference.mean())
            if abs(mean) <= margin:
                notes.append(
                    f"{run.name}: {metric.name} {metric.headline} {values.mean():.3f} is within noise of the random baseline's "
                    f"{reference.mean():.3f} (difference {mean:+.3f}, noise ±{margin:.3f}: {NOISE_SE:g} standard errors over "
                    f"{difference.size} images); on these images it is no better than a random map"
                )
    return notes
