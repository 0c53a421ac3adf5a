"""Sanity checks (Adebayo et al., 2018) for the gradient family on the shipped demo model: a map
that stays the same when the model's weights are redrawn does not explain the model.

Measured as the mean Spearman rank correlation between each image's map before and after (same 8
inputs, same classes, default options; weights redrawn with PyTorch's default initialisation
under seed 0, BatchNorm statistics kept), for two randomisations:

* the classifier (the last Linear) alone: the class-specific methods (input × gradient,
  integrated gradients, guided Grad-CAM) fall below 0.5. Guided backprop (0.81) and SmoothGrad
  over saliency (0.91) stay high: both take max over channels of |gradient|, which barely depends
  on the class weights — guided backprop's insensitivity is the one Adebayo et al. report. These
  values depend on the draw (seeds 1 and 2 give 0.50/0.24 for input × gradient, 0.52/0.24 for
  integrated gradients, 0.66/0.36 for guided Grad-CAM; 0.83/0.84 and 0.93/0.87 for the two
  insensitive ones), so the assertions hold for seed 0 only;
* every conv and linear layer: all maps change (below 0.5), except SmoothGrad with its defaults
  (0.547), recorded as a strict expected failure rather than hidden.

The values are printed and attached to the test report with ``record_property``.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import vexplain as vx

METHODS = ["input_x_gradient", "integrated_gradients", "guided_backprop", "guided_gradcam", "smoothgrad"]
pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor .* did not already require gradients")


@pytest.fixture(scope="module")
def demo():
    from vexplain.demo.model import ASSETS, WEIGHTS_FILE, load_demo_model, preprocess
    from vexplain.demo.scenes import generate_dataset

    if not (ASSETS / WEIGHTS_FILE).is_file():
        pytest.fail("the shipped demo weights are missing; run python -m vexplain.demo.train")
    model = load_demo_model()
    scenes, labels, _ = generate_dataset(8, seed=0)
    return model, preprocess(scenes), [int(label) for label in labels]


def ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1, ties sharing their average rank."""
    order = np.empty(len(values))
    order[values.argsort(kind="stable")] = np.arange(len(values))
    _, group = np.unique(values, return_inverse=True)
    return (np.bincount(group, weights=order) / np.bincount(group))[group]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps (0.0 when either is constant)."""
    x, y = ranks(np.ravel(a).astype(np.float64)), ranks(np.ravel(b).astype(np.float64))
    x, y = x - x.mean(), y - y.mean()
    denominator = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denominator) if denominator > 0 else 0.0


def test_spearman_helper():
    assert spearman(np.array([1.0, 2.0, 3.0, 4.0]), np.array([10.0, 20.0, 25.0, 90.0])) == pytest.approx(1.0)
    assert spearman(np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0])) == pytest.approx(-1.0)
    # ties: ranks (0.5, 0.5, 2) against (0, 1, 2): Pearson of those ranks
    assert spearman(np.array([1.0, 1.0, 2.0]), np.array([1.0, 2.0, 3.0])) == pytest.approx(np.sqrt(3) / 2)


def redrawn(model: torch.nn.Module, classifier_only: bool) -> torch.nn.Module:
    copied = copy.deepcopy(model)
    layers = [m for m in copied.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(0)
        for layer in layers[-1:] if classifier_only else layers:
            layer.reset_parameters()
    return copied


def mean_spearman(model, randomized, x, targets, method) -> float:
    before = vx.explain(model, x, method=method, targets=targets).maps
    after = vx.explain(randomized, x, method=method, targets=targets).maps
    return float(np.mean([spearman(a, b) for a, b in zip(before, after)]))


#: measured, not hidden: SmoothGrad (defaults: saliency base, 25 samples, noise 0.15) keeps much of
#: the input's structure — mean Spearman 0.547 with this seed (0.479 with seed 1)
BORDERLINE = {"smoothgrad": "SmoothGrad's default maps keep a rank correlation of 0.547 (> 0.5) after every layer is redrawn"}


@pytest.mark.parametrize(
    "method", [pytest.param(m, marks=pytest.mark.xfail(reason=BORDERLINE[m], strict=True)) if m in BORDERLINE else m for m in METHODS]
)
def test_maps_change_when_the_model_is_randomised(demo, method, record_property):
    model, x, targets = demo
    value = mean_spearman(model, redrawn(model, classifier_only=False), x, targets, method)
    record_property("spearman_all_layers", value)
    print(f"{method}: Spearman after redrawing every layer = {value:.3f}")
    assert value < 0.5


#: maps built from max over channels of |gradient|: insensitive to the classifier's weights
CLASS_INSENSITIVE = {"guided_backprop", "smoothgrad"}


@pytest.mark.parametrize("method", METHODS)
def test_classifier_randomisation(demo, method, record_property):
    model, x, targets = demo
    value = mean_spearman(model, redrawn(model, classifier_only=True), x, targets, method)
    record_property("spearman_classifier_only", value)
    print(f"{method}: Spearman after redrawing the classifier = {value:.3f}")
    if method in CLASS_INSENSITIVE:
        assert 0.5 < value < 0.999  # moves a little, stays highly correlated
    else:
        assert value < 0.5
