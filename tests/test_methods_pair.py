"""PAIR saliency's methods (Blur IG, Guided IG, XRAI): hand values on tiny fixed-weight models,
agreement with ``saliency.core`` given the same model gradients, batch sizes, option errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import vexplain as vx
from vexplain.core.errors import InvalidOption, UnsupportedCapability
from models import assert_untouched, images, onnx_bytes, seeded_cnn, snapshot

pair = pytest.importorskip("saliency.core", reason="PAIR saliency is the reference: pip install saliency==0.2.1 --no-deps")
scipy_ndimage = pytest.importorskip("scipy.ndimage")


def call_model_function(model: nn.Module, target: int):
    """PAIR's model interface over our torch model: HWC float batches in, d y_t / d x (HWC) out."""

    def call(x_batch, call_model_args=None, expected_keys=None):
        x = torch.tensor(np.moveaxis(np.asarray(x_batch), -1, 1), dtype=torch.float32, requires_grad=True)
        (grad,) = torch.autograd.grad(model(x)[:, target].sum(), x)  # leaves the parameters' .grad alone
        return {pair.INPUT_OUTPUT_GRADIENTS: np.moveaxis(grad.double().numpy(), 1, -1)}

    return call


def hwc(image: np.ndarray) -> np.ndarray:
    return np.moveaxis(image, 0, -1).astype(np.float64)


def chw(values: np.ndarray) -> np.ndarray:
    return np.moveaxis(values, -1, 0)


@pytest.fixture(scope="module")
def model():
    return seeded_cnn(seed=4)


@pytest.fixture(scope="module")
def x():
    return images(4, size=16, seed=5)


# -------------------------------------------------------------------------------- Blur IG


def test_blur_matrix_is_scipys_gaussian_filter():
    from vexplain.plugins._gaussian import blurred

    image = np.random.default_rng(0).normal(size=(2, 9, 13))
    for sigma in (0.0, 0.01, 0.7, 2.5, 40.0):
        expected = scipy_ndimage.gaussian_filter(image, sigma=[0, sigma, sigma], mode="constant") if sigma else image
        actual = blurred(torch.from_numpy(image)[None], [sigma])[0].numpy()
        np.testing.assert_allclose(actual, expected, atol=1e-12)


def test_blur_ig_by_hand_on_a_linear_model():
    # y = Σ w ⊙ x is linear, so the path integral is exact: Σ attributions = y(x) − y(x_σmax), and
    # for a one-pixel image the blur keeps x·(φ(0)/Σφ)² (zero padding, rows then columns).
    net = nn.Sequential(nn.Flatten(), nn.Linear(1, 1, bias=False))
    with torch.no_grad():
        net[1].weight.fill_(2.0)
    x = np.array([[[[3.0]]]], dtype=np.float32)
    exp = vx.explain(net, x, method="blur_ig", targets=0, steps=4, max_sigma=1.0)
    # σ_i = 0, .25, .5, .75 (radius 0, 1, 2, 3 taps): blurring one pixel keeps the centre weight
    centre = lambda s: 1.0 / sum(np.exp(-0.5 * k * k / s**2) for k in range(-int(4 * s + 0.5), int(4 * s + 0.5) + 1))
    sigmas = [0.0, 0.25, 0.5, 0.75]
    blur = lambda s: 3.0 * (centre(s) ** 2 if s else 1.0)
    expected = -sum(0.25 * (blur(s + 0.01) - blur(s)) / 0.01 * 2.0 for s in sigmas)
    np.testing.assert_allclose(exp.attributions.reshape(-1), [expected], rtol=1e-5)
    assert expected > 0


def test_blur_ig_agrees_with_pair(model, x):
    exp = vx.explain(model, x, method="blur_ig", steps=20, max_sigma=6.0)
    for image, target, ours in zip(x, exp.targets, exp.attributions):
        theirs = pair.BlurIG().GetMask(hwc(image), call_model_function(model, int(target)), steps=20, max_sigma=6.0, batch_size=7)
        np.testing.assert_allclose(ours, chw(theirs), atol=1e-4)


def test_blur_ig_sqrt_spacing_agrees_with_pair_point_by_point(model, x):
    # PAIR weights a batch by its last point's Δσ: with batch_size=1 each point keeps its own
    exp = vx.explain(model, x[:1], method="blur_ig", steps=10, max_sigma=4.0, sqrt=True)
    theirs = pair.BlurIG().GetMask(hwc(x[0]), call_model_function(model, int(exp.targets[0])), steps=10, max_sigma=4.0, sqrt=True, batch_size=1)
    np.testing.assert_allclose(exp.attributions[0], chw(theirs), atol=1e-4)


@pytest.mark.parametrize("batch_size", [1, 2, 4, 16])
def test_blur_ig_batch_size_changes_nothing(model, x, batch_size):
    whole = vx.explain(model, x, method="blur_ig", steps=8, batch_size=64)
    part = vx.explain(model, x, method="blur_ig", steps=8, batch_size=batch_size)
    np.testing.assert_allclose(part.attributions, whole.attributions, atol=1e-6)


def test_blur_ig_completeness_and_defaults(model, x):
    exp = vx.explain(model, x[:2], method="blur_ig")
    assert exp.options["steps"] == 100 and exp.options["max_sigma"] == 50.0 and exp.options["grad_step"] == 0.01
    assert len(exp.options["completeness_gap"]) == 2


@pytest.mark.parametrize("option", [{"steps": 0}, {"max_sigma": 0}, {"grad_step": -1.0}, {"sqrt": "maybe"}])
def test_blur_ig_bad_options(model, x, option):
    with pytest.raises(InvalidOption):
        vx.explain(model, x[:1], method="blur_ig", **option)


# -------------------------------------------------------------------------------- Guided IG


def test_guided_ig_without_deviation_is_the_right_riemann_ig_by_hand():
    # max_dist=0 keeps the path on the straight line: x_k = k/S · x, and each step adds
    # (x/S) ⊙ ∇y(x_{k-1}). For y = (w·x)², ∇y = 2(w·x)w: Σ_{k<S} 2(k/S)(w·x)² w x / S, by hand
    net = nn.Sequential(nn.Flatten(), nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([[1.0, -2.0]]))
    square = nn.Sequential(net, SquareLayer())
    x = np.array([[[[1.5, 0.5]]]], dtype=np.float32)  # w·x = 0.5
    exp = vx.explain(square, x, method="guided_ig", targets=0, steps=4, max_dist=0.0)
    wx, w, steps = 0.5, np.array([1.0, -2.0]), 4
    expected = sum(2 * (k / steps) * wx * w * x.reshape(-1) / steps for k in range(steps))
    np.testing.assert_allclose(exp.attributions.reshape(-1), expected, atol=1e-6)


class SquareLayer(nn.Module):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z**2


def test_guided_ig_moves_the_small_gradient_feature_first_by_hand():
    # y = 3·x0 + 1·x1 from b = 0 to x = (1, 1), 2 steps, fraction 0.5 (the lower half: x1),
    # max_dist 1 (unbounded). Step 1 must cover L1 1 of 2: x1 (the smaller |gradient|) moves
    # all the way, x0 stays; step 2 moves x0. Linear model: attributions are w ⊙ x = (3, 1).
    net = nn.Sequential(nn.Flatten(), nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([[3.0, 1.0]]))
    x = np.ones((1, 1, 1, 2), dtype=np.float32)
    from vexplain.plugins.guided_ig import guided_step

    point, grad = torch.zeros(1, 1, 2, dtype=torch.float64), torch.tensor([[[3.0, 1.0]]], dtype=torch.float64)
    gained = guided_step(point, grad, torch.ones_like(point), torch.zeros_like(point), 0, 2, 0.5, 1.0)
    np.testing.assert_allclose(point.reshape(-1), [0.0, 1.0])
    np.testing.assert_allclose(gained.reshape(-1), [0.0, 1.0])
    exp = vx.explain(net, x, method="guided_ig", targets=0, steps=2, fraction=0.5, max_dist=1.0)
    np.testing.assert_allclose(exp.attributions.reshape(-1), [3.0, 1.0], atol=1e-6)
    assert abs(exp.options["completeness_gap"][0]) < 1e-5


class NumpyWithInterpolation:
    """numpy for PAIR 0.2.1's guided_ig module, which calls ``np.quantile(..., interpolation=)``:
    numpy 2 renamed that argument ``method`` (same meaning); everything else is numpy itself."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def quantile(a, q, interpolation="linear", **kwargs):
        return np.quantile(a, q, method=interpolation, **kwargs)


def test_guided_ig_agrees_with_pair(model, x, monkeypatch):
    import saliency.core.guided_ig as reference

    monkeypatch.setattr(reference, "np", NumpyWithInterpolation())
    exp = vx.explain(model, x, method="guided_ig", steps=30, baseline=-0.5)
    for image, target, ours in zip(x, exp.targets, exp.attributions):
        theirs = pair.GuidedIG().GetMask(hwc(image), call_model_function(model, int(target)), x_baseline=np.full_like(hwc(image), -0.5), x_steps=30)
        np.testing.assert_allclose(ours, chw(theirs), atol=1e-4)


@pytest.mark.parametrize("batch_size", [1, 2, 4, 16])
def test_guided_ig_batch_size_changes_nothing(model, x, batch_size):
    whole = vx.explain(model, x, method="guided_ig", steps=10, batch_size=64)
    part = vx.explain(model, x, method="guided_ig", steps=10, batch_size=batch_size)
    np.testing.assert_allclose(part.attributions, whole.attributions, atol=1e-6)


@pytest.mark.parametrize("option", [{"steps": 0}, {"fraction": 1.5}, {"max_dist": -0.1}])
def test_guided_ig_bad_options(model, x, option):
    with pytest.raises(InvalidOption):
        vx.explain(model, x[:1], method="guided_ig", **option)


# -------------------------------------------------------------------------------- XRAI


def test_xrai_ranking_by_hand():
    # 4x4 attribution, three regions: C = whole image, A = left half (all 1), B = top-right
    # quarter (all 3); the bottom-right quarter holds −1, 0, 0, 0.
    from vexplain.plugins._xrai_regions import ranked_regions

    attr = torch.tensor([[1.0, 1.0, 3.0, 3.0], [1.0, 1.0, 3.0, 3.0], [1.0, 1.0, -1.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    a = torch.zeros(4, 4, dtype=torch.bool)
    a[:, :2] = True
    b = torch.zeros(4, 4, dtype=torch.bool)
    b[:2, 2:] = True
    c = torch.ones(4, 4, dtype=torch.bool)
    out = ranked_regions(attr, torch.stack([c, a, b]), area=1.0, min_pixel_diff=1)
    # first step: densities C = 19/16, A = 1, B = 3 → B; then C's new pixels: (8 + (−1)) / 12
    # = 0.583 vs A's 1 → A; then C adds the 4 bottom-right pixels at (−1 + 0 + 0 + 0)/4
    expected = np.array([[1, 1, 3, 3], [1, 1, 3, 3], [1, 1, -0.25, -0.25], [1, 1, -0.25, -0.25]])
    np.testing.assert_allclose(out.numpy(), expected)
    # area=0.2 stops after B (4/16 = 0.25 > 0.2): the rest takes the mean of its own attribution
    out = ranked_regions(attr, torch.stack([c, a, b]), area=0.2, min_pixel_diff=1)
    rest = (8 - 1) / 12
    np.testing.assert_allclose(out.numpy(), np.where(b.numpy(), 3.0, rest))
    # min_pixel_diff=5 drops B (4 pixels): C (19/16) beats A (1) and covers everything
    out = ranked_regions(attr, torch.stack([c, a, b]), area=1.0, min_pixel_diff=5)
    np.testing.assert_allclose(out.numpy(), np.full((4, 4), 19 / 16))


def test_dilation_is_skimages():
    from skimage.morphology import dilation, disk

    from vexplain.plugins._xrai_regions import dilated

    masks = np.random.default_rng(1).random((3, 20, 17)) > 0.97
    ours = dilated(torch.from_numpy(masks), 3).numpy()
    for mask, got in zip(masks, ours):
        np.testing.assert_array_equal(got, dilation(mask, footprint=disk(3)))


@pytest.mark.parametrize("size", [16, 40])
def test_xrai_agrees_with_pair_given_the_same_base_attribution(model, size):
    x = images(2, size=size, seed=6)
    exp = vx.explain(model, x, method="xrai", base="saliency", base_options={"abs": False})
    for image, base, ours in zip(x, exp.attributions, exp.maps):
        pixel = np.moveaxis(np.repeat(base, 3, axis=0), 0, -1).astype(np.float64)
        theirs = pair.XRAI().GetMask(hwc(image), None, base_attribution=pixel)
        np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_xrai_default_base_is_pairs_ig(model):
    x = images(1, size=16, seed=7)
    exp = vx.explain(model, x, method="xrai", steps=20)
    details = pair.XRAIParameters(steps=20, return_ig_attributions=True)
    theirs = pair.XRAI().GetMaskWithDetails(hwc(x[0]), call_model_function(model, int(exp.targets[0])), batch_size=20, extra_parameters=details)
    ig = np.mean(theirs.ig_attribution, axis=0).max(axis=-1)
    np.testing.assert_allclose(exp.attributions[0, 0], ig, atol=1e-4)
    np.testing.assert_allclose(exp.maps[0], theirs.attribution_mask, atol=1e-4)


def test_xrai_over_a_gradient_free_base_runs_on_onnx(model):
    x = images(2, size=16, seed=8)
    onnx = vx.adapt(onnx_bytes(model, (3, 16, 16)))
    options = {"base": "occlusion", "base_options": {"window": 4, "stride": 4}}
    on_onnx = vx.explain(onnx, x, method="xrai", **options)
    on_torch = vx.explain(model, x, method="xrai", **options)
    np.testing.assert_allclose(on_onnx.maps, on_torch.maps, atol=1e-4)
    with pytest.raises(UnsupportedCapability):
        vx.explain(onnx, x, method="xrai")


@pytest.mark.parametrize("batch_size", [1, 2, 4, 16])
def test_xrai_batch_size_changes_nothing(model, batch_size):
    # path points per pass, and inputs one by one against both at once (the registry-wide
    # tests/test_batch_invariance.py runs 16 inputs in chunks of 1, 2 and 4)
    x = images(2, size=16, seed=9)
    whole = vx.explain(model, x, method="xrai", steps=8, batch_size=64)
    parts = [vx.explain(model, x[i : i + 1], method="xrai", steps=8, batch_size=batch_size) for i in range(2)]
    np.testing.assert_allclose(np.concatenate([p.maps for p in parts]), whole.maps, atol=1e-6)


@pytest.mark.parametrize("option", [{"base": "nope"}, {"base": "xrai"}, {"area": 2.0}, {"min_pixel_diff": 0}, {"base_options": {"abs": True}}])
def test_xrai_bad_options(model, option):
    with pytest.raises(InvalidOption):
        vx.explain(model, images(1, size=16), method="xrai", **option)


def test_xrai_leaves_the_model_alone(model):
    before = snapshot(model)
    vx.explain(model, images(1, size=16), method="xrai", steps=4)
    assert_untouched(model, before)


def test_guided_ig_with_a_baseline_far_off_the_inputs_scale_is_a_one_line_input_error():
    x = images(1, size=8, seed=3)
    with pytest.raises(vx.InvalidInput, match=r"method 'guided_ig' failed at step \d+ of 20 .*input\(s\) 0: .*baseline 1e\+09.*give a baseline on the inputs' scale") as caught:
        vx.explain(seeded_cnn(seed=0, width=4), x, method="guided_ig", baseline=1e9, steps=20)
    assert "\n" not in str(caught.value)
