"""Captum-family methods on tiny fixed-weight models, against values computed by hand; their
option and capability errors; and the model left as it was."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from torch import nn

import vexplain as vx
from models import LinearNet, assert_untouched, onnx_bytes, seeded_cnn, snapshot, train_flag_cnn

FEATURE_METHODS = ("feature_ablation", "shapley_sampling", "kernel_shap", "lime")
RULE_METHODS = ("deeplift", "deeplift_shap", "deconvolution")


def two_unit_net() -> nn.Module:
    """y = [1 3] · ReLU(W x) on a (1, 1, 1, 2) input, W = [[1, 2], [−1, 1]], no biases."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(2, 2, bias=False), nn.ReLU(), nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([[1.0, 2.0], [-1.0, 1.0]]))
        net[3].weight.copy_(torch.tensor([[1.0, 3.0]]))
    return net.eval()


X2 = np.array([[[[1.0, 1.0]]]], dtype=np.float32)


def test_deeplift_by_hand():
    # z(x) = [3, 0], z(b) = [−3, 0] for b = −1: unit 0 rescales by Δy/Δz = 3/6, unit 1 has Δz = 0
    # and takes its gradient ReLU'(0) = 0; m = Wᵀ([1 3] ⊙ [0.5, 0]) = [0.5, 1]; (x − b) ⊙ m = [1, 2].
    exp = vx.explain(two_unit_net(), X2, method="deeplift", baseline=-1.0, targets=0)
    np.testing.assert_allclose(exp.attributions.reshape(-1), [1.0, 2.0], atol=1e-6)
    np.testing.assert_allclose(exp.maps.reshape(-1), [1.0, 2.0], atol=1e-6)
    assert abs(exp.options["completeness_gap"][0]) < 1e-6  # y(x) − y(b) = 3 − 0
    # (x − b) ⊙ the plain gradient would give [2, 4], which does not sum to 3
    plain = vx.explain(two_unit_net(), X2, method="saliency", abs=False, targets=0).attributions.reshape(-1)
    np.testing.assert_allclose(2.0 * plain, [2.0, 4.0], atol=1e-6)


def test_deeplift_shap_averages_deeplift_over_the_references():
    # b = −1 gives [1, 2] (above); b = 0: z(b) = [0, 0], unit 0 rescales by 3/3, m = [1, 2], x ⊙ m = [1, 2]
    references = np.stack([np.full((1, 1, 2), -1.0), np.zeros((1, 1, 2))]).astype(np.float32)
    exp = vx.explain(two_unit_net(), X2, method="deeplift_shap", baselines=references, targets=0)
    np.testing.assert_allclose(exp.attributions.reshape(-1), [1.0, 2.0], atol=1e-6)


def test_deconvolution_by_hand():
    # top gradient [1 3] through ReLU's deconvolution rule max(g, 0) = [1, 3] (unit 1 is inactive but
    # passes it), then Wᵀ [1, 3] = [−2, 5]; the plain gradient would be [1, 2]
    exp = vx.explain(two_unit_net(), X2, method="deconvolution", targets=0, abs=False, reduce="sum")
    np.testing.assert_allclose(exp.attributions.reshape(-1), [-2.0, 5.0], atol=1e-6)


LIN_W = np.arange(1, 17, dtype=np.float32).reshape(1, 16) / 8.0  # y = Σ w_i x_i on a (1, 1, 4, 4) input
X44 = np.linspace(-1.0, 2.0, 16, dtype=np.float32).reshape(1, 1, 4, 4)


def quadrant_sums(values: np.ndarray) -> np.ndarray:
    """Σ over each 2×2 quadrant of a 4×4 array, painted back on the quadrant."""
    out = np.zeros_like(values)
    for r in (0, 2):
        for c in (0, 2):
            out[r : r + 2, c : c + 2] = values[r : r + 2, c : c + 2].sum()
    return out


@pytest.mark.parametrize("method,options", [
    ("feature_ablation", {}), ("shapley_sampling", {"samples": 3}), ("kernel_shap", {"samples": 40}), ("lime", {"samples": 40, "alpha": 0.0}),
])
@pytest.mark.parametrize("engine", ["torch", "onnx"])
def test_feature_methods_give_each_quadrant_its_exact_share_on_a_linear_model(method, options, engine):
    # on y = Σ w_i x_i every feature's value is Σ_{i in f} w_i (x_i − baseline), for any coalition:
    # ablation, each permutation's gains, and both linear fits are exact
    baseline = 0.25
    exp = vx.explain(LinearNet(LIN_W), X44, method=method, targets=0, cells=2, baseline=baseline, engine=engine, **options)
    expected = quadrant_sums(LIN_W.reshape(4, 4) * (X44[0, 0] - baseline))
    np.testing.assert_allclose(exp.maps[0], expected, atol=1e-4)
    assert exp.options["features"] == [4] and exp.options["engine"] == engine


def test_gradient_shap_on_a_linear_model_is_input_minus_baseline_times_weights():
    exp = vx.explain(LinearNet(LIN_W), X44, method="gradient_shap", baselines=0.5, samples=4, targets=0)
    np.testing.assert_allclose(exp.attributions[0, 0], (X44[0, 0] - 0.5) * LIN_W.reshape(4, 4), atol=1e-6)


def test_gradient_shap_noise_averages_out_on_a_linear_model():
    # (x + ε − b) ⊙ w averaged over samples: the noise's sample mean times w remains
    exp = vx.explain(LinearNet(LIN_W), X44, method="gradient_shap", baselines=0.0, samples=2000, stdev=0.1, targets=0)
    np.testing.assert_allclose(exp.attributions[0, 0], X44[0, 0] * LIN_W.reshape(4, 4), atol=0.02)


def test_grid_features_cover_the_image_in_equal_bands():
    from vexplain.plugins._superpixels import grid_labels

    labels = grid_labels((5, 6), 2, torch.device("cpu"))
    assert labels.tolist()[0] == [0, 0, 0, 1, 1, 1] and labels.tolist()[4] == [2, 2, 2, 3, 3, 3]
    assert grid_labels((3, 3), 8, torch.device("cpu")).unique().numel() == 9  # never more cells than pixels


def test_slic_superpixels_when_scikit_image_is_installed():
    pytest.importorskip("skimage")
    x = np.zeros((1, 3, 16, 16), dtype=np.float32)
    x[:, :, :, 8:] = 1.0  # two flat halves: SLIC's segments do not cross the edge
    exp = vx.explain(seeded_cnn(), x, method="feature_ablation", segments="slic", cells=2, targets=0)
    (count,) = exp.options["features"]
    assert 2 <= count <= 8
    assert np.unique(exp.maps[0, :, :8]).size + np.unique(exp.maps[0, :, 8:]).size <= count + 1


def test_superpixels_without_scikit_image_are_a_typed_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage", None)
    with pytest.raises(vx.InvalidOption, match="scikit-image.*grid"):
        vx.explain(seeded_cnn(), np.zeros((1, 3, 8, 8), np.float32), method="lime", segments="slic")


@pytest.mark.parametrize("method,options,match", [
    ("shapley_sampling", {"samples": 0}, "samples"),
    ("lime", {"kernel_width": 0}, "kernel_width"),
    ("kernel_shap", {"cells": 0}, "cells"),
    ("feature_ablation", {"segments": "watershed"}, "segments"),
    ("gradient_shap", {"stdev": -1.0}, "stdev"),
    ("gradient_shap", {"baselines": "zeros"}, "baselines"),
    ("deeplift", {"baseline": float("nan")}, "baseline"),
])
def test_bad_options_are_typed_one_line_errors(method, options, match):
    with pytest.raises(vx.InvalidOption, match=match) as error:
        vx.explain(seeded_cnn(), np.zeros((1, 3, 8, 8), np.float32), method=method, **options)
    assert "\n" not in str(error.value)


def test_baseline_images_of_the_wrong_shape_name_the_right_one():
    with pytest.raises(vx.InvalidOption, match=r"\(M, 3, 8, 8\)"):
        vx.explain(seeded_cnn(), np.zeros((1, 3, 8, 8), np.float32), method="deeplift_shap", baselines=np.zeros((2, 3, 4, 4), np.float32))
    with pytest.raises(vx.InvalidOption, match="deeplift_shap"):
        vx.explain(seeded_cnn(), np.zeros((1, 3, 8, 8), np.float32), method="deeplift", baseline=np.zeros((2, 3, 8, 8), np.float32))


def test_kernel_shap_needs_two_features():
    with pytest.raises(vx.InvalidOption, match="at least 2 features"):
        vx.explain(seeded_cnn(), np.zeros((1, 3, 8, 8), np.float32), method="kernel_shap", cells=1)


@pytest.mark.parametrize("method", RULE_METHODS)
def test_rule_methods_refuse_onnx_and_torchscript_naming_what_works(method):
    x = np.zeros((1, 3, 16, 16), np.float32)
    with pytest.raises(vx.UnsupportedCapability, match="rule_gradients") as error:
        vx.explain(onnx_bytes(seeded_cnn(), (3, 16, 16)), x, method=method)
    assert "feature_ablation" in str(error.value)  # the forward-only methods still work there
    with pytest.raises(vx.UnsupportedCapability, match="rule_gradients"):
        vx.explain(torch.jit.script(seeded_cnn()), x, method=method)


@pytest.mark.parametrize("method", FEATURE_METHODS)
def test_feature_methods_run_on_onnx_models(method):
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    onnx_exp = vx.explain(onnx_bytes(seeded_cnn(), (3, 16, 16)), x, method=method, cells=4)
    torch_exp = vx.explain(seeded_cnn(), x, method=method, cells=4, engine="torch")
    np.testing.assert_allclose(onnx_exp.maps, torch_exp.maps, atol=1e-5)
    assert onnx_exp.options["backend"] == "onnx"


@pytest.mark.parametrize("method", RULE_METHODS + ("gradient_shap",))
def test_the_model_is_left_untouched_even_after_an_error(method):
    model = train_flag_cnn().train()
    before = snapshot(model)
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    vx.explain(model, x, method=method)
    assert_untouched(model, before)
    model.boom.armed = True
    with pytest.raises(RuntimeError, match="boom"):
        vx.explain(model, x, method=method)
    model.boom.armed = False
    assert_untouched(model, before)
    # the function mode is gone: a plain backward afterwards is the ordinary gradient
    after = vx.explain(model, x, method="saliency", abs=False)
    inputs = torch.from_numpy(x).requires_grad_(True)
    scores = model.eval()(inputs)
    (grad,) = torch.autograd.grad(scores.gather(1, scores.argmax(1, keepdim=True)).sum(), inputs)
    np.testing.assert_allclose(after.attributions, grad.numpy(), atol=1e-6)


def test_lime_warns_when_the_lasso_zeroes_every_coefficient():
    exp = vx.explain(LinearNet(LIN_W), X44, method="lime", targets=0, cells=2, samples=40, alpha=1e6)
    assert not exp.maps.any()
    assert any("every coefficient" in line for line in exp.warnings)
