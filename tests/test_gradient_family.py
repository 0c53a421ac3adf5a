"""The gradient family (input × gradient, integrated gradients, guided backprop, guided Grad-CAM,
SmoothGrad/SmoothGrad²/VarGrad): hand-computed values and option handling. Agreement with Captum
is in test_gradient_captum.py, batching and safety in test_gradient_batching.py, the sanity
checks in test_gradient_sanity.py.

Hand values use the fixtures of tests/test_hand_computed.py: on ``HandCamNet`` (no conv bias, ReLU,
GAP, Linear) the gradient for class 1 is ``HAND_GRADIENT`` and the score is positively homogeneous
in x up to its bias: y_t(αx) − b_t = α (y_t(x) − b_t) with the same gradient for every α > 0,
while at α = 0 every ReLU input is 0 and torch's ReLU gradient there is 0.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import vexplain as vx
from models import HAND_X, HandCamNet, LinearNet, QuadraticNet, close, images, seeded_cnn
from test_hand_computed import HAND_GRADIENT, LIN_C0, LIN_C1, LIN_W, U
from vexplain.plugins.integrated_gradients import quadrature
from vexplain.plugins.smoothgrad import SmoothGrad, smooth

pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor .* did not already require gradients", "ignore:Setting backward hooks")



XG = HAND_X[0, 0] * HAND_GRADIENT  # x ⊙ ∂y_1/∂x on the hand model; sums to y_1(x) − b_1 = 0.85 − 0.1


# ------------------------------------------------------------------------ input x gradient


def test_input_x_gradient_hand_cnn():
    exp = vx.explain(HandCamNet(), HAND_X, method="input_x_gradient")
    assert exp.targets.tolist() == [1]
    close(exp.attributions, XG[None, None])
    close(exp.maps, XG[None])
    close(exp.maps.sum(), 0.75)  # Euler: a homogeneous network's score is Σ x ⊙ gradient
    assert exp.options["abs"] is False and exp.options["reduce"] == "sum"


def test_input_x_gradient_linear_sums_channels():
    x = np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2) - 3.0
    exp = vx.explain(LinearNet(LIN_W), x, method="input_x_gradient", targets=0)
    expected = x[0] * np.stack([LIN_C0, LIN_C1])
    close(exp.attributions, expected[None])
    close(exp.maps, expected.sum(axis=0)[None])


# -------------------------------------------------------------------- integrated gradients


@pytest.mark.parametrize(
    "rule, factor",
    [
        ("gausslegendre", 1.0),  # every node in (0, 1), weights sum to 1
        ("riemann_right", 1.0),  # α = 1/n .. 1
        ("riemann_middle", 1.0),
        ("riemann_left", 1 - 1 / 8),  # α = 0 (gradient 0) carries weight 1/n
        ("riemann_trapezoid", 1 - 3 / 16),  # ends 1/(2n) (one at α = 0), n − 2 inner weights 1/n
    ],
)
def test_integrated_gradients_hand_cnn(rule, factor):
    exp = vx.explain(HandCamNet(), HAND_X, method="integrated_gradients", rule=rule, steps=8)
    close(exp.attributions, factor * XG[None, None])
    close(exp.maps, factor * XG[None])
    # completeness: Σ attributions − (y(x) − y(0)) = (factor − 1) · 0.75
    assert exp.options["completeness_gap"] == pytest.approx([(factor - 1) * 0.75], abs=1e-6)


@pytest.mark.parametrize("rule", ["gausslegendre", "riemann_middle"])
def test_integrated_gradients_quadratic_with_baseline(rule):
    # y = Σ v x²: ∫ 2v (b + α(x − b)) dα = v (x + b), so attributions = v (x² − b²) exactly for any
    # rule exact on linear integrands; the map sums channels and completeness holds exactly.
    v = np.array([[1.0, -2.0, 0.5, 3.0, -1.0, 0.25, 2.0, -0.5]])
    x = (np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2) - 3.0) / 2
    exp = vx.explain(QuadraticNet(v), x, method="integrated_gradients", baseline=0.5, rule=rule, steps=3)
    expected = v.reshape(2, 2, 2) * (x[0] ** 2 - 0.25)
    close(exp.attributions, expected[None], atol=1e-5)
    close(exp.maps, expected.sum(axis=0)[None], atol=1e-5)
    assert exp.options["completeness_gap"] == pytest.approx([0.0], abs=1e-5)
    assert exp.options["baseline"] == 0.5 and exp.options["rule"] == rule


def test_quadrature_nodes_and_weights():
    alphas, weights = quadrature("riemann_trapezoid", 5)
    close(alphas, [0, 0.25, 0.5, 0.75, 1])
    close(weights, [0.1, 0.2, 0.2, 0.2, 0.1])  # Captum's: 1/n with the ends halved
    close(quadrature("riemann_left", 4)[0], [0, 0.25, 0.5, 0.75])
    close(quadrature("riemann_right", 4)[0], [0.25, 0.5, 0.75, 1])
    close(quadrature("riemann_middle", 4)[0], [0.125, 0.375, 0.625, 0.875])
    alphas, weights = quadrature("gausslegendre", 2)
    close(alphas, [0.5 - 0.5 / np.sqrt(3), 0.5 + 0.5 / np.sqrt(3)])
    close(weights, [0.5, 0.5])
    with pytest.raises(vx.InvalidOption, match="steps >= 2"):
        vx.explain(HandCamNet(), HAND_X, method="integrated_gradients", rule="riemann_left", steps=1)


# -------------------------------------------------------------------------- guided backprop

# Guided backprop on HandCamNet: ∂y_t/∂A_k = W[t, k] / 4, and the ReLU's backward now also drops
# negative gradients. Class 1: channel 0 gets −0.125 < 0 -> 0; channel 1 gets 0.5 where z1 > 0
# (blocks B00, B11), times kernel 1 [[0, 1], [-1, 0]]. Class 0: channel 0 gets 0.25 where z0 > 0
# (B00, B01, B11), times kernel 0 [[1, 0], [0, 1]]; channel 1 (−0.25) is dropped.
GUIDED_1 = np.array([[0, 0.5, 0, 0], [-0.5, 0, 0, 0], [0, 0, 0, 0.5], [0, 0, -0.5, 0]], dtype=np.float32)
GUIDED_0 = np.array([[0.25, 0, 0.25, 0], [0, 0.25, 0, 0.25], [0, 0, 0.25, 0], [0, 0, 0, 0.25]], dtype=np.float32)


@pytest.mark.parametrize("target, expected", [(1, GUIDED_1), (0, GUIDED_0)])
def test_guided_backprop_hand_cnn(target, expected):
    exp = vx.explain(HandCamNet(), HAND_X, method="guided_backprop", targets=target)
    close(exp.attributions, expected[None, None])  # signed, as Captum returns it
    close(exp.maps, np.abs(expected)[None])  # max over channels of |.|
    plain = vx.explain(HandCamNet(), HAND_X, method="saliency", targets=target, abs=False)
    assert not np.allclose(plain.attributions, exp.attributions)


def test_guided_backprop_guides_functional_relu_like_modules():
    from models import TinySegNet, tiny_seg_net

    seg = tiny_seg_net(seed=3)
    modules = TinySegNet()
    modules.load_state_dict(seg.state_dict())
    modules.forward = lambda x: modules.head(modules.relu(modules.conv2(modules.relu(modules.conv1(x)))))
    x = images(2, size=8, seed=4)
    def score(out):
        return out[:, 1].sum(dim=(1, 2))
    functional = vx.explain(seg, x, method="guided_backprop", targets=score)
    with_modules = vx.explain(modules, x, method="guided_backprop", targets=score)
    close(functional.attributions, with_modules.attributions, atol=1e-7)
    plain = vx.explain(seg, x, method="saliency", targets=score, abs=False)
    assert not np.allclose(plain.attributions, functional.attributions, atol=1e-4)


# ------------------------------------------------------------------------- guided Grad-CAM


def test_guided_gradcam_hand_cnn():
    # Grad-CAM layer map for class 1 = [[0.75, 0], [0, 0.125]] (test_hand_computed), upsampled U L U^T
    cam = U @ np.array([[0.75, 0.0], [0.0, 0.125]]) @ U.T
    exp = vx.explain(HandCamNet(), HAND_X, method="guided_gradcam")
    close(exp.layer_maps, [[[0.75, 0.0], [0.0, 0.125]]])
    close(exp.attributions, (GUIDED_1 * cam)[None, None])
    close(exp.maps, (np.abs(GUIDED_1) * cam)[None])
    nearest = vx.explain(HandCamNet(), HAND_X, method="guided_gradcam", interpolate="nearest")
    close(nearest.attributions, (GUIDED_1 * np.kron([[0.75, 0.0], [0.0, 0.125]], np.ones((2, 2))))[None, None])


# ------------------------------------------------------------------------------ SmoothGrad

SQUARE_V = np.array([[1.0, -2.0, 0.5, 3.0]])
SQUARE_X = np.array([[[[1.0, -1.0], [2.0, 0.5]]]], dtype=np.float32)


@pytest.mark.parametrize("variant", ["smoothgrad", "squared", "vargrad"])
def test_smoothgrad_injected_noise_hand_values(variant):
    # y = Σ v x², signed gradient 2 v x. Noise ±d (two samples) around x: the mean is 2 v x,
    # the mean square 4 v² (x² + d²), the (population) variance 4 v² d².
    d = np.array([[0.5, 1.0], [-1.0, 2.0]], dtype=np.float32)
    draws = torch.from_numpy(np.stack([d, -d])[None, :, None])  # (N=1, S=2, C=1, H, W)
    adapter = vx.adapt(QuadraticNet(SQUARE_V))
    base = vx.core.registry.REGISTRY.explainer("saliency").obj
    maps, attributions, layer_maps = smooth(
        base(), adapter, torch.from_numpy(SQUARE_X), torch.tensor([0]), {"abs": False, "reduce": "sum"}, draws, torch.ones(1), variant, 1
    )
    v, x = SQUARE_V.reshape(2, 2), SQUARE_X[0, 0]
    expected = {"smoothgrad": 2 * v * x, "squared": 4 * v**2 * (x**2 + d**2), "vargrad": 4 * v**2 * d**2}[variant]
    close(attributions.numpy(), expected[None, None], atol=1e-5)
    close(maps.numpy(), expected[None], atol=1e-5)
    assert layer_maps is None


def test_smoothgrad_linear_model_and_noise_scale():
    # a linear model's gradient ignores the noise: SmoothGrad = saliency, VarGrad = 0
    x = np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2) - 3.0
    saliency = vx.explain(LinearNet(LIN_W), x, method="saliency", targets=0)
    exp = vx.explain(LinearNet(LIN_W), x, method="smoothgrad", targets=0, samples=6, noise=0.2, seed=3)
    close(exp.maps, saliency.maps, atol=1e-6)
    close(exp.attributions, saliency.attributions, atol=1e-6)
    assert exp.options["noise_sigma"] == pytest.approx([0.2 * 7.0])  # 0.2 × (max − min)
    assert exp.options["base_options"] == {"abs": True, "reduce": "max"}
    squared = vx.explain(LinearNet(LIN_W), x, method="smoothgrad", targets=0, variant="squared", samples=6)
    close(squared.maps, saliency.maps**2, atol=1e-5)
    var = vx.explain(LinearNet(LIN_W), x, method="smoothgrad", targets=0, variant="vargrad", samples=6)
    close(var.maps, np.zeros_like(var.maps), atol=1e-5)


def test_smoothgrad_defaults_and_base_options():
    assert {k: o.default for k, o in SmoothGrad.options.items()} == {
        "base": "saliency", "base_options": None, "samples": 25, "noise": 0.15, "seed": 0, "variant": "smoothgrad", "batch_size": 64, "memory_mb": 1024,
    }
    x = images(2, size=8, seed=5)
    model = seeded_cnn(seed=0)
    ig = vx.explain(model, x, method="smoothgrad", base="integrated_gradients", base_options={"steps": 4}, samples=3)
    assert ig.options["base_options"]["steps"] == 4 and ig.options["base_options"]["rule"] == "gausslegendre"
    cam = vx.explain(model, x, method="smoothgrad", base="gradcam", samples=3)
    assert cam.layer_maps is not None and cam.attributions is None
    with pytest.raises(vx.InvalidOption, match="must name a gradient method"):
        vx.explain(model, x, method="smoothgrad", base="occlusion")
    with pytest.raises(vx.InvalidOption, match="has no option 'stpes'"):
        vx.explain(model, x, method="smoothgrad", base="integrated_gradients", base_options={"stpes": 4})
    with pytest.raises(vx.InvalidOption, match="option .noise. of method .smoothgrad. must be a number >= 0; got -0.1"):
        vx.explain(model, x, method="smoothgrad", noise=-0.1)


def test_smoothgrad_seed():
    model, x = seeded_cnn(seed=0), images(2, size=8, seed=5)
    first = vx.explain(model, x, method="smoothgrad", samples=4, seed=7)
    again = vx.explain(model, x, method="smoothgrad", samples=4, seed=7)
    other = vx.explain(model, x, method="smoothgrad", samples=4, seed=8)
    np.testing.assert_array_equal(first.maps, again.maps)
    assert not np.allclose(first.maps, other.maps)


def test_integrated_gradients_batch_size_from_memory_budget():
    from vexplain.core.perturbation import derived_batch_size
    from vexplain.plugins._gradient_maps import GRADIENT_MEMORY_FACTOR

    def gradient_batch_size(shape, memory_mb):
        return derived_batch_size({"batch_size": None, "memory_mb": memory_mb}, shape, GRADIENT_MEMORY_FACTOR)

    assert gradient_batch_size((3, 224, 224), 1024) == 27  # 1 GiB / (3·224²·4 bytes · 64)
    assert gradient_batch_size((3, 64, 64), 1024) == 256  # capped
    assert gradient_batch_size((3, 224, 224), 1) == 1
    exp = vx.explain(HandCamNet(), HAND_X, method="integrated_gradients", steps=4, memory_mb=0.008)
    assert exp.options["batch_size"] == 2  # 8388 bytes // (1·4·4 values · 4 bytes · 64)
    close(exp.maps, XG[None])
