"""aug_smooth and eigen_smooth, the CAM base's shared options: hand-computed on the fixed-weight
model (tests/models.py ``HandCamNet``; values at layer ``features`` as in test_cam_family.py) and
against pytorch-grad-cam 1.5.7 on a seeded CNN."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import vexplain as vx
from models import HAND_X, HandCamNet, close, images, seeded_cnn
from pgc_reference import pytorch_grad_cam

U = np.array([[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]])


def minmax(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    span = m.max() - m.min()
    return (m - m.min()) / span if span > 0 else np.zeros_like(m)


# ------------------------------------------------------------------------ hand-computed values


def test_aug_smooth_hand_cam_keeps_the_original_target():
    # Layer map of CAM for class 1: -0.5 A0 + 2 A1 = [[3, -0.5], [0, 0.5]]. Scaling the input by
    # 0.9 or 1.1 scales the bias-free conv + ReLU activations, so the min-max scaled map is the same.
    # The flipped input has A0' = [[2, 2], [1, 1]], A1' = 0 (k1 = top-right - bottom-left is
    # negative on every block), so its class-1 map is -0.5 A0' = [[-1, -1], [-0.5, -0.5]]
    # (flip-symmetric) -> min-max [[0, 0], [1, 1]]. Its own top class would be 0 (scores
    # (1.5, -0.65, 0.175)): the original input's target 1 is kept.
    plain = np.array([[3.0, -0.5], [0.0, 0.5]])
    flipped = np.array([[-1.0, -1.0], [-0.5, -0.5]])
    exp = vx.explain(HandCamNet(), HAND_X, method="cam", aug_smooth=True)
    assert exp.targets.tolist() == [1] and exp.options["aug_smooth"] is True
    assert len(exp.options["augmentations"]) == 6
    close(exp.layer_maps[0], (minmax(plain) + minmax(flipped)) / 2, atol=1e-6)
    close(exp.layer_maps[0], [[0.5, 0.0], [4 / 7, 9 / 14]], atol=1e-6)
    close(exp.maps[0], (minmax(U @ plain @ U.T) + minmax(U @ flipped @ U.T)) / 2, atol=1e-6)
    close(exp.scores, vx.explain(HandCamNet(), HAND_X, method="cam").scores)


def hand_weighted_eigen() -> np.ndarray:
    # Grad-CAM weights for class 1 are the constant gradients (-1/8, 1/2), so the per-channel
    # contributions at the four cells are (-A0/8, A1/2): (-1/4, 1), (-1/8, 0), (0, 0), (-3/8, 1/2).
    # Centred (means -3/16, 3/8): X = (-1/16, 5/8), (1/16, -3/8), (3/16, -3/8), (-3/16, 1/8);
    # X^T X = [[5/64, -5/32], [-5/32, 11/16]], first eigenvector v ∝ (b, lambda1 - a); sign toward
    # the centred channel sum (9/16, -5/16, -3/16, -1/16).
    a, b, d = 5 / 64, -5 / 32, 11 / 16
    lam = (a + d + math.sqrt((a - d) ** 2 + 4 * b * b)) / 2
    v = np.array([b, lam - a]) / math.hypot(b, lam - a)
    centred = np.array([[-1 / 16, 5 / 8], [1 / 16, -3 / 8], [3 / 16, -3 / 8], [-3 / 16, 1 / 8]])
    projection = centred @ v
    if projection @ centred.sum(axis=1) < 0:
        projection = -projection
    return projection.reshape(2, 2)


def test_eigen_smooth_hand_gradcam():
    expected = hand_weighted_eigen()
    assert expected[0, 0] > 0 and expected.min() < 0  # the ReLU matters
    exp = vx.explain(HandCamNet(), HAND_X, method="gradcam", eigen_smooth=True)
    close(exp.layer_maps[0], np.maximum(expected, 0), atol=1e-6)
    # signed where the method defines no ReLU: HiResCAM's contributions are G ⊙ A, the same here
    close(vx.explain(HandCamNet(), HAND_X, method="hirescam", eigen_smooth=True).layer_maps[0], expected, atol=1e-6)
    assert vx.explain(HandCamNet(), HAND_X, method="gradcam").options["eigen_smooth"] is False


def test_eigen_smooth_is_not_offered_where_the_map_is_not_a_channel_sum():
    with pytest.raises(vx.InvalidOption, match="eigen_smooth"):
        vx.explain(HandCamNet(), HAND_X, method="eigencam", eigen_smooth=True)
    with pytest.raises(vx.InvalidOption, match="aug_smooth.*True or False"):
        vx.explain(HandCamNet(), HAND_X, method="gradcam", aug_smooth=1)


def test_aug_smooth_on_onnx_and_batched():
    from models import onnx_bytes

    model, x = seeded_cnn(seed=2), images(4, size=16, seed=3)
    onnx = vx.adapt(onnx_bytes(model, (3, 16, 16)))
    torch_exp = vx.explain(model, x, method="cam", aug_smooth=True, eigen_smooth=True)
    close(vx.explain(onnx, x, method="cam", aug_smooth=True, eigen_smooth=True).maps, torch_exp.maps, atol=1e-5)
    parts = [vx.explain(model, x[i : i + 1], method="cam", aug_smooth=True, eigen_smooth=True).maps for i in range(4)]
    close(np.concatenate(parts), torch_exp.maps, atol=1e-5)


# ---------------------------------------------------------------------- pytorch-grad-cam agreement

PGC_CLASSES = {"gradcam": "GradCAM", "gradcam_plusplus": "GradCAMPlusPlus", "xgradcam": "XGradCAM", "layercam": "LayerCAM", "gradcam_elementwise": "GradCAMElementWise"}


def oriented(projection_function):
    """pytorch-grad-cam's ``get_2d_projection`` with the sign vexplain chooses (non-negative
    correlation with the centred channel sum of what is projected); everything else is its own."""

    def project(batch: np.ndarray) -> np.ndarray:
        out = projection_function(batch)
        sums = batch.sum(axis=1).reshape(len(batch), -1)
        sums = sums - sums.mean(axis=1, keepdims=True)
        signs = np.where((out.reshape(len(out), -1) * sums).sum(axis=1) < 0, -1.0, 1.0)
        return np.float32(out * signs[:, None, None])

    return project


def pgc_maps(method: str, model, x: np.ndarray, targets, monkeypatch, **flags) -> np.ndarray:
    pgc = pytorch_grad_cam()
    from pytorch_grad_cam import base_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    import sys

    cls = getattr(pgc, PGC_CLASSES[method])
    for module in {base_cam, sys.modules[cls.__module__]}:
        if hasattr(module, "get_2d_projection"):
            monkeypatch.setattr(module, "get_2d_projection", oriented(module.get_2d_projection))
    with cls(model=model, target_layers=[model.features]) as cam:
        return cam(input_tensor=torch.from_numpy(x), targets=[ClassifierOutputTarget(int(t)) for t in targets], **flags)


@pytest.mark.parametrize("method", sorted(PGC_CLASSES))
@pytest.mark.parametrize("flags", [{}, {"aug_smooth": True}, {"eigen_smooth": True}, {"aug_smooth": True, "eigen_smooth": True}], ids=str)
def test_agrees_with_pytorch_grad_cam(method, flags, monkeypatch):
    model, x = seeded_cnn(seed=2), images(4, size=16, seed=3)
    targets = [0, 1, 2, 3]
    reference = pgc_maps(method, model, x, targets, monkeypatch, **flags)
    exp = vx.explain(model, x, method=method, targets=targets, layer="features", **flags)
    ours = exp.maps if flags.get("aug_smooth") else exp.normalized("minmax")
    assert reference.std() > 0.1
    close(ours, reference, atol=1e-5)


def test_pytorch_grad_cam_eigen_sign_is_the_svds(monkeypatch):
    """The one pinned difference: pytorch-grad-cam keeps the SVD's sign, vexplain orients it."""
    pytorch_grad_cam()
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    from vexplain.plugins.cam_base import first_component_projection

    rng = np.random.default_rng(5)
    batch = rng.standard_normal((8, 6, 5, 5)).astype(np.float32)
    ours = first_component_projection(torch.from_numpy(batch)).numpy()
    theirs = get_2d_projection(batch.copy())
    signs = np.sign((ours * theirs).reshape(8, -1).sum(axis=1))
    close(theirs, ours * signs[:, None, None], atol=1e-5)
    centred = batch.sum(axis=1).reshape(8, -1)
    centred -= centred.mean(axis=1, keepdims=True)
    assert ((ours.reshape(8, -1) * centred).sum(axis=1) >= 0).all()


def test_upsampling_matches_pytorch_grad_cam_resize():
    # pytorch-grad-cam min-max scales at layer size, then resizes with OpenCV; vexplain upsamples
    # with torch (align_corners=False). OpenCV's INTER_LINEAR upscaling is the same half-pixel map.
    import cv2

    layer = np.random.default_rng(1).random((8, 8)).astype(np.float32)
    ours = F.interpolate(torch.from_numpy(layer)[None, None], size=(16, 16), mode="bilinear", align_corners=False)[0, 0].numpy()
    close(ours, cv2.resize(layer, (16, 16)), atol=1e-6)
