"""Smooth Grad-CAM++: hand-computed on the fixed-weight model, the formula re-derived in numpy
from the adapter's noisy gradients, and its pinned differences from torchcam 0.5.0."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import vexplain as vx
from models import HAND_X, HandCamNet, close, images, seeded_cnn
from vexplain.core.targets import TargetRequest
from vexplain.plugins.sscam import sample_noise


def test_std_zero_is_gradcam_plusplus_and_hand():
    # With no noise every D_p is G^p: Grad-CAM++ on the hand model, [[8/7, 0], [0, 4/7]] (see
    # test_cam_family.test_gradcam_plusplus_hand; torchcam's eps 1e-8 instead of 1e-6 changes < 1e-5)
    exp = vx.explain(HandCamNet(), HAND_X, method="smooth_gradcam_plusplus", std=0.0, samples=2)
    close(exp.layer_maps, [[[8 / 7, 0.0], [0.0, 4 / 7]]], atol=1e-5)


def test_hand_noise_does_not_change_a_linear_head():
    # HandCamNet's gradient w.r.t. the layer is W[t] / 4 whatever the input: noise changes nothing
    exp = vx.explain(HandCamNet(), HAND_X, method="smooth_gradcam_plusplus", std=1.0, samples=3, seed=4)
    close(exp.layer_maps, [[[8 / 7, 0.0], [0.0, 4 / 7]]], atol=1e-5)


def noisy_gradients(model, x, targets, layer, samples, std, seed):
    adapter = vx.adapt(model)
    clean = adapter.activation_gradients(torch.from_numpy(x), layer, TargetRequest(targets, len(x)))
    noisy = [adapter.activation_gradients(torch.from_numpy(x) + sample_noise(seed, s, x.shape[1:], std), layer, TargetRequest(targets, len(x))) for s in range(samples)]
    grads = np.stack([r.gradients.double().numpy() for r in noisy])
    return clean.activations.double().numpy(), grads, noisy[-1].activations.double().numpy()


def paper_map(acts, grads):
    d1, d2, d3 = (np.mean(grads**p, axis=0) for p in (1, 2, 3))
    alpha = np.where(d2 != 0, d2 / (2 * d2 + acts.sum(axis=(2, 3), keepdims=True) * d3 + 1e-8), 0)
    w = (alpha * np.maximum(d1, 0)).sum(axis=(2, 3))
    return np.maximum(np.einsum("nc,nchw->nhw", w, acts), 0)


def torchcam_formula(acts, grads, last_acts):
    """torchcam 0.5.0: sum of A ⊙ D3 in the denominator, the last sample's gradient and activations."""
    d2, d3 = np.mean(grads**2, axis=0), np.mean(grads**3, axis=0)
    alpha = d2 / (2 * d2 + (d3 * acts).sum(axis=(2, 3), keepdims=True) + 1e-8)
    w = (alpha * np.maximum(grads[-1], 0)).sum(axis=(2, 3))
    return np.maximum(np.einsum("nc,nchw->nhw", w, last_acts), 0)


def test_matches_the_paper_formula_on_a_seeded_cnn():
    model, x, targets = seeded_cnn(seed=2), images(4, size=16, seed=3), [0, 1, 2, 3]
    acts, grads, _ = noisy_gradients(model, x, targets, "features", 4, 0.3, 0)
    exp = vx.explain(model, x, method="smooth_gradcam_plusplus", targets=targets)
    assert exp.options["samples"] == 4 and exp.options["std"] == 0.3
    expected = paper_map(acts, grads)
    assert expected.std() > 1e-2
    close(exp.layer_maps, expected, atol=1e-5)


def test_differs_from_torchcam_as_documented():
    methods = pytest.importorskip("torchcam.methods", reason="pip install --no-deps torchcam==0.5.0")
    model, x, targets = seeded_cnn(seed=2), images(4, size=16, seed=3), [0, 1, 2, 3]
    samples, std, seed = 4, 0.3, 0

    class SharedNoise:
        def __init__(self) -> None:
            self.calls = 0

        def sample(self, size):
            noise = sample_noise(seed, self.calls, tuple(size[1:]), std).expand(*size)
            self.calls += 1
            return noise

    with methods.SmoothGradCAMpp(model, target_layer="features", input_shape=(3, 16, 16), num_samples=samples, std=std) as extractor:
        extractor._distrib = SharedNoise()
        model(torch.from_numpy(x))
        reference = extractor(class_idx=targets, normalized=False)[0].detach().numpy()
    acts, grads, last_acts = noisy_gradients(model, x, targets, "features", samples, std, seed)
    close(torchcam_formula(acts, grads, last_acts), reference, atol=1e-4)  # our reading of torchcam is right
    ours = vx.explain(model, x, method="smooth_gradcam_plusplus", targets=targets).layer_maps
    assert np.abs(ours - reference).max() > 1e-3
