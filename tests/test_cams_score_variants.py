"""SS-CAM and IS-CAM (Score-CAM's smoothed and integrated variants): hand-computed values on the
fixed-weight model (tests/models.py ``HandCamNet``, scored in numpy by test_cam_family's
``hand_forward``) and agreement with torchcam 0.5.0 at a layer of the input's size."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import vexplain as vx
from models import HAND_X, HandCamNet, close, images, onnx_bytes, seeded_cnn
from test_cam_family import A0, A1, U, hand_forward
from vexplain.plugins.iscam import IsCam
from vexplain.plugins.sscam import sample_noise

MASKS = np.stack([U @ A0 @ U.T / (3 + 1e-8), U @ A1 @ U.T / (2 + 1e-8)])  # min-max scaled upsampled A_k


def softmax(v: np.ndarray) -> np.ndarray:
    e = np.exp(v - v.max())
    return e / e.sum()


def hand_map(gains: np.ndarray) -> np.ndarray:
    w = softmax(gains)
    return np.maximum(w[0] * A0 + w[1] * A1, 0)


def test_iscam_hand():
    # S = 2: gains_k = (y_1(x ⊙ M_k / 2) + y_1(x ⊙ M_k)) / 2 - y_1(x), y_1(x) = 0.85
    x = HAND_X[:, 0]
    gains = (hand_forward(x * MASKS / 2)[:, 1] + hand_forward(x * MASKS)[:, 1]) / 2 - 0.85
    exp = vx.explain(HandCamNet(), HAND_X, method="iscam", samples=2)
    close(exp.layer_maps[0], hand_map(gains), atol=1e-5)
    assert exp.options["masked_inputs"] == 4 and exp.options["samples"] == 2
    close(vx.explain(HandCamNet(), HAND_X, method="iscam", samples=1).maps, vx.explain(HandCamNet(), HAND_X, method="scorecam").maps, atol=1e-6)


def test_sscam_hand():
    # S = 3 noise samples δ_s (C, 4, 4): gains_k = mean_s y_1(x ⊙ (M_k + δ_s,k)) - 0.85
    x = HAND_X[:, 0]
    noise = np.stack([sample_noise(7, s, (2, 4, 4), 0.5).numpy() for s in range(3)])
    gains = np.mean([hand_forward(x * (MASKS + noise[s]))[:, 1] for s in range(3)], axis=0) - 0.85
    exp = vx.explain(HandCamNet(), HAND_X, method="sscam", samples=3, std=0.5, seed=7)
    close(exp.layer_maps[0], hand_map(gains), atol=1e-5)
    close(vx.explain(HandCamNet(), HAND_X, method="sscam", std=0.0, samples=2).maps, vx.explain(HandCamNet(), HAND_X, method="scorecam").maps, atol=1e-6)
    other_seed = vx.explain(HandCamNet(), HAND_X, method="sscam", samples=3, std=0.5, seed=8)
    assert np.abs(other_seed.layer_maps - exp.layer_maps).max() > 1e-3


@pytest.mark.parametrize("method, option, value", [("sscam", "samples", 0), ("sscam", "std", -1.0), ("sscam", "seed", -1), ("iscam", "samples", 0), ("iscam", "engine", "gpu")])
def test_bad_options(method, option, value):
    with pytest.raises(vx.InvalidOption, match=option):
        vx.explain(HandCamNet(), HAND_X, method=method, **{option: value})


@pytest.mark.parametrize("method", ["sscam", "iscam"])
def test_onnx_and_engines_agree(method):
    model, x = seeded_cnn(seed=2), images(3, size=16, seed=3)
    options = {"samples": 3}
    torch_exp = vx.explain(model, x, method=method, engine="torch", **options)
    close(vx.explain(model, x, method=method, engine="onnx", **options).maps, torch_exp.maps, atol=1e-5)
    onnx = vx.adapt(onnx_bytes(model, (3, 16, 16)))
    close(vx.explain(onnx, x, method=method, batch_size=5, **options).maps, torch_exp.maps, atol=1e-5)


# ------------------------------------------------------------------------------ torchcam agreement


def torchcam_methods():
    return pytest.importorskip("torchcam.methods", reason="pip install --no-deps torchcam==0.5.0")


def torchcam_maps(cls, model, x, targets, **kwargs) -> np.ndarray:
    with cls(model, target_layer="features.1", input_shape=tuple(x.shape[1:]), **kwargs) as extractor:
        with torch.no_grad():
            scores = model(torch.from_numpy(x))
        return extractor(class_idx=list(targets), scores=scores, normalized=False)[0].numpy()


def test_sscam_agrees_with_torchcam_given_the_same_noise():
    methods = torchcam_methods()
    model, x, targets = seeded_cnn(seed=2), images(4, size=16, seed=3), [0, 1, 2, 3]
    samples, std, seed = 4, 0.3, 5

    class SharedNoise:
        """torchcam's noise distribution replaced by vexplain's samples, one per call, for every image."""

        def __init__(self) -> None:
            self.calls = 0

        def sample(self, size):
            noise = sample_noise(seed, self.calls % samples, tuple(size[1:]), std)
            self.calls += 1
            return noise.expand(*size)

    with methods.SSCAM(model, target_layer="features.1", input_shape=(3, 16, 16), num_samples=samples, std=std) as extractor:
        extractor._distrib = SharedNoise()
        with torch.no_grad():
            scores = model(torch.from_numpy(x))
        reference = extractor(class_idx=targets, scores=scores, normalized=False)[0].numpy()
    exp = vx.explain(model, x, method="sscam", targets=targets, layer="features.1", samples=samples, std=std, seed=seed)
    assert reference.std() > 0.05
    close(exp.layer_maps, reference, atol=1e-4)


def test_iscam_differs_from_torchcam_only_by_its_accumulated_coefficient(monkeypatch):
    methods = torchcam_methods()
    model, x, targets = seeded_cnn(seed=2), images(4, size=16, seed=3), [0, 1, 2, 3]
    reference = torchcam_maps(methods.ISCAM, model, x, targets, num_samples=4)
    ours = vx.explain(model, x, method="iscam", targets=targets, layer="features.1", samples=4).layer_maps
    assert np.abs(ours - reference).max() > 1e-3  # the paper's path s/S is not torchcam's
    # torchcam's coefficients: 1/4, 1/4 + 2/4, 1/4 + 2/4 + 3/4, ... (cumulative)
    monkeypatch.setattr(IsCam, "coefficients", staticmethod(lambda s: list(np.cumsum([(j + 1) / s for j in range(s)]))))
    patched = vx.explain(model, x, method="iscam", targets=targets, layer="features.1", samples=4).layer_maps
    close(patched, reference, atol=1e-4)


def test_scorecam_agrees_with_torchcam_at_input_size():
    methods = torchcam_methods()
    model, x, targets = seeded_cnn(seed=2), images(4, size=16, seed=3), [0, 1, 2, 3]
    reference = torchcam_maps(methods.ScoreCAM, model, x, targets)
    close(vx.explain(model, x, method="scorecam", targets=targets, layer="features.1").layer_maps, reference, atol=1e-4)
