"""Extremal perturbations: the mask generator, area constraint and pyramid by hand, agreement with
TorchRay's ``extremal_perturbation``, batch sizes, determinism, ONNX refusal, option errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import vexplain as vx
from vexplain.core.errors import InvalidOption, UnsupportedCapability
from vexplain.plugins._extremal_masks import MaskGenerator, area_penalty, area_reference, bump, perturbed, pyramid
from models import assert_untouched, images, onnx_bytes, seeded_cnn, snapshot

CPU = torch.device("cpu")
FAST = {"max_iter": 6, "step": 3, "sigma": 5.0}


@pytest.fixture(scope="module")
def model():
    return seeded_cnn(seed=4)


def test_bump_by_hand():
    z = torch.tensor([0.0, 0.5, 1.0, 1.5])
    np.testing.assert_allclose(bump(z).numpy(), [1.0, 1.0, math.exp(-0.5), math.exp(-2.0)], rtol=1e-6)


def test_mask_generator_by_hand():
    # the smooth max is a softmax-weighted mean of bump values ≤ 1: all parameters 1 give at most
    # 1, and near 1 (every pixel lies within σ/2 of a centre, bump 1, which dominates at
    # coldness 20); all parameters 0 give 0 everywhere
    generator = MaskGenerator((10, 12), 2, 3.0, CPU)
    assert generator.shape_in == [5, 6] and generator.radius == 1 + math.ceil(3.0 / 2)
    mask, canvas = generator.generate(torch.ones(1, 5, 6))
    assert mask.shape == (1, 10, 12) and canvas.shape == (1, *generator.shape_out)
    assert (mask <= 1).all() and (mask > 0.95).all()
    mask, _ = generator.generate(torch.zeros(1, 5, 6))
    np.testing.assert_array_equal(mask.numpy(), 0.0)
    # one parameter: at its own centre the value is the smooth max of one bump of 1 and zeros,
    # 1·e^20 / (e^20 + (K − 1)·e^0)
    params = torch.zeros(1, 5, 6)
    params[0, 2, 3] = 1.0
    mask, _ = generator.generate(params)
    k = (2 * generator.radius + 1) ** 2
    centre = 2 * 2, 3 * 2  # σ + step·i on the canvas, minus the margin σ
    np.testing.assert_allclose(mask[0][centre].item(), math.exp(20) / (math.exp(20) + (k - 1)), rtol=1e-5)


def test_area_constraint_by_hand():
    reference = area_reference(0.25, 8, CPU)
    np.testing.assert_array_equal(reference.numpy(), [0, 0, 0, 0, 0, 0, 1, 1])
    binary = torch.tensor([[[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]])
    assert area_penalty(binary, reference[None]).item() == 0.0
    half = torch.full((1, 2, 4), 0.5)
    assert area_penalty(half, reference[None]).item() == pytest.approx(0.25)  # every pixel 0.5 away


def test_pyramid_and_interpolation_by_hand():
    x = torch.arange(12.0).reshape(1, 1, 3, 4)
    levels = pyramid(x, 3, "fade", 20.0)
    np.testing.assert_allclose(levels[0, :, 0].numpy(), [0 * x[0, 0].numpy(), 0.5 * x[0, 0].numpy(), x[0, 0].numpy()])
    # mask 0.75 lies half-way between levels 1 (0.5 x) and 2 (x): 0.75 x
    out = perturbed(levels, torch.full((1, 3, 4), 0.75))
    np.testing.assert_allclose(out[0, 0].numpy(), 0.75 * x[0, 0].numpy(), rtol=1e-6)
    blur = pyramid(x, 2, "blur", 1.0)
    np.testing.assert_array_equal(blur[0, 1].numpy(), x[0].numpy())  # the last level is the image


@pytest.fixture(scope="module")
def torchray():
    """TorchRay's extremal_perturbation module; only the tests that compare with it skip without it."""
    return pytest.importorskip("torchray.attribution.extremal_perturbation", reason="TorchRay is the reference: pip install torchray==1.0.0.2 --no-deps")


def test_mask_generator_and_blur_are_torchrays(torchray):
    from torchray.utils import imsmooth

    ours = MaskGenerator((20, 23), 3, 5.0, CPU)
    theirs = torchray.MaskGenerator((20, 23), 3, 5.0)
    params = torch.rand(3, 1, *theirs.shape_in, generator=torch.Generator().manual_seed(0))
    for a, b in zip(ours.generate(params[:, 0]), theirs.generate(params)):
        np.testing.assert_allclose(a.numpy(), b[:, 0].numpy(), atol=1e-6)
    x = torch.from_numpy(images(1, size=16, seed=1))
    levels = pyramid(x, 8, "blur", 20.0)
    for level, sigma in enumerate(torch.linspace(0, 1, 8)):
        np.testing.assert_allclose(levels[0, level].numpy(), imsmooth(x, sigma=float((1 - sigma) * 20))[0].numpy(), atol=1e-5)


@pytest.mark.parametrize("variant", ["preserve", "delete", "dual"])
def test_agrees_with_torchray(model, variant, torchray):
    x = images(2, size=24, seed=5)
    exp = vx.explain(model, x, method="extremal_perturbation", areas=[0.1, 0.3], variant=variant, max_iter=12, step=3, sigma=5.0)
    flags = [p.requires_grad for p in model.parameters()]
    try:
        for image, target, ours in zip(x, exp.targets, exp.maps):
            theirs, _ = torchray.extremal_perturbation(
                model, torch.from_numpy(image[None]), int(target), areas=[0.1, 0.3], variant=variant, max_iter=12, step=3, sigma=5
            )
            np.testing.assert_allclose(ours, theirs[:, 0].sum(0).numpy(), atol=1e-4)
    finally:  # TorchRay switches requires_grad off on the model's parameters and leaves it so
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)


@pytest.mark.parametrize("batch_size", [1, 2, 4, 16])
def test_batch_size_changes_nothing(model, batch_size):
    x = images(4, size=16, seed=6)
    whole = vx.explain(model, x, method="extremal_perturbation", batch_size=64, **FAST)
    parts = [vx.explain(model, x[i : i + batch_size], method="extremal_perturbation", batch_size=batch_size, **FAST) for i in range(0, 4, batch_size)]
    np.testing.assert_allclose(np.concatenate([p.maps for p in parts]), whole.maps, atol=1e-5)


def test_deterministic_and_the_model_left_alone(model):
    x = images(2, size=16, seed=7)
    before = snapshot(model)
    first = vx.explain(model, x, method="extremal_perturbation", **FAST)
    assert_untouched(model, before)
    second = vx.explain(model, x, method="extremal_perturbation", **FAST)
    np.testing.assert_array_equal(first.maps, second.maps)
    assert first.options["areas"] == (0.1,) and first.options["variant"] == "preserve"
    assert ((first.maps >= 0) & (first.maps <= 1)).all()


def test_onnx_is_refused_with_a_typed_error(model):
    onnx = vx.adapt(onnx_bytes(model, (3, 16, 16)))
    with pytest.raises(UnsupportedCapability, match="gradients"):
        vx.explain(onnx, images(1, size=16), method="extremal_perturbation")


@pytest.mark.parametrize("option", [{"areas": 0.0}, {"areas": [0.1, 1.5]}, {"areas": []}, {"areas": "big"}, {"variant": "both"}, {"step": 0}, {"num_levels": 1}])
def test_bad_options(model, option):
    with pytest.raises(InvalidOption):
        vx.explain(model, images(1, size=16), method="extremal_perturbation", **option)


@pytest.mark.parametrize(
    "option, message",
    [
        ({"step": 17}, r"option 'step' .* is 17, more than the side of the 16x16 images; give at most 16"),
        ({"sigma": 5000.0}, r"sigma=5000 and step=7 .* MB per mask of 16x16 images, more than memory_mb=1024"),
        ({"sigma": 2e4}, r"option 'sigma'"),
        ({"num_levels": 257}, r"option 'num_levels'"),
    ],
)
def test_sizes_that_would_exhaust_memory_are_refused_before_any_work(model, option, message):
    with pytest.raises(InvalidOption, match=message):
        vx.explain(model, images(1, size=16), method="extremal_perturbation", **option)


def test_a_sigma_too_small_for_its_step_is_refused_and_a_step_as_large_as_the_image_works(model):
    with pytest.raises(InvalidOption, match=r"step=16 and sigma=5 .* give a 1x1 mask canvas, too small to cover the 16x16 images"):
        vx.explain(model, images(1, size=16), method="extremal_perturbation", max_iter=2, step=16, sigma=5.0)
    exp = vx.explain(model, images(1, size=16), method="extremal_perturbation", max_iter=2, step=16, sigma=30.0)
    assert exp.maps.shape == (1, 16, 16) and np.isfinite(exp.maps).all()
