"""The evaluation report's statements about its numbers: ties highlighted alike, axes with units,
and a note where a method is within noise of the random baseline (hand-computed values)."""
from __future__ import annotations

import math
import re

import numpy as np

from vexplain.cli.evaluate_run import RANDOM_BASELINE, MethodRun
from vexplain.cli.report_html import _table
from vexplain.cli.report_stats import axis_labels, best_rows, noise_notes
from vexplain.core.evaluation import Evaluation, MetricInfo


def metric(name: str, higher_is_better: bool) -> MetricInfo:
    return MetricInfo(name, ("forward",), ("model",), "test", "a test metric", "none", "score", higher_is_better, {})


def run(name: str, **per_metric: list[float]) -> MethodRun:
    evaluations = {
        m: Evaluation(metric=m, method=name, values={"score": np.asarray(v, np.float64)}, targets=np.zeros(len(v), np.int64), headline="score", higher_is_better=True)
        for m, v in per_metric.items()
    }
    return MethodRun(name=name, evaluations=evaluations)


UP, DOWN = metric("up", True), metric("down", False)


def test_tied_best_values_are_all_best():
    runs = [
        run("a", up=[0.5, 0.7], down=[0.2, 0.2]),  # up 0.6, down 0.2
        run("b", up=[0.6, 0.6], down=[0.1, 0.3000004]),  # up 0.6 (tied), down 0.2000002 → 0.200 as shown: tied
        run("c", up=[0.1, 0.1], down=[0.25, 0.25]),
    ]
    assert best_rows(runs, [UP, DOWN]) == {1: {0, 1}, 2: {0, 1}}
    runs[1] = run("b", up=[0.6, 0.61], down=[0.2, 0.21])  # up 0.605 beats a; down 0.205 loses
    assert best_rows(runs, [UP, DOWN]) == {1: {1}, 2: {0}}


def test_the_table_marks_every_best_cell():
    html = _table(["method", "up"], [["a", "0.600"], ["b", "0.600"], ["c", "0.100"]], {1: {0, 1}})
    assert html.count("<td class=best>0.600</td>") == 2 and "<td>0.100</td>" in html


def test_axis_labels_have_units():
    assert axis_labels("deletion", True) == ("fraction of pixels changed (0 to 1)", "target probability (0 to 1)")
    x, y = axis_labels("ssim", False)
    assert "(count)" in x and y == "SSIM with the original map (−1 to 1)"
    assert axis_labels("spearman_abs", False)[1].startswith("Spearman ρ")


def test_a_method_within_noise_of_the_random_baseline_is_noted():
    baseline = run(RANDOM_BASELINE, up=[0.50, 0.60, 0.40, 0.50])
    # differences 0.10, -0.10, 0.10, -0.02: mean 0.02, sd 0.0998666, 2·sd/√4 = 0.0998666 → within noise
    close = run("close", up=[0.60, 0.50, 0.50, 0.48])
    # differences 0.30, 0.31, 0.29, 0.30: mean 0.30, sd 0.0081650, margin 0.0081650 → clearly better
    better = run("better", up=[0.80, 0.91, 0.69, 0.80])
    notes = noise_notes([close, better, baseline], [UP])
    assert len(notes) == 1 and notes[0].startswith("close: up score 0.520 is within noise of the random baseline's 0.500")
    margin = 2 * np.std([0.10, -0.10, 0.10, -0.02], ddof=1) / math.sqrt(4)
    assert f"difference +0.020, noise ±{margin:.3f}" in notes[0] and "4 images" in notes[0]


def test_no_note_without_a_baseline_or_with_one_image():
    assert noise_notes([run("a", up=[0.5, 0.5])], [UP]) == []
    assert noise_notes([run("a", up=[0.5]), run(RANDOM_BASELINE, up=[0.5])], [UP]) == []
