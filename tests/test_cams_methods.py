"""Eigen-Grad-CAM, Grad-CAM element-wise and KPCA-CAM: hand-computed values on the fixed-weight
model (tests/models.py ``HandCamNet``: at layer ``features`` A0 = [[2, 1], [0, 3]],
A1 = [[2, 0], [0, 1]], and for class 1 the gradients are G0 = -1/8, G1 = 1/2 everywhere) and
agreement with pytorch-grad-cam 1.5.7 (and scikit-learn's KernelPCA) on a seeded CNN."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import vexplain as vx
from models import HAND_X, HandCamNet, close, images, onnx_bytes, seeded_cnn
from pgc_reference import pytorch_grad_cam
from test_cams_smoothing import hand_weighted_eigen, oriented

EIGEN_CENTRED = np.array([[0.5, 1.25], [-0.5, -0.75], [-1.5, -0.75], [1.5, 0.25]])  # (A0, A1) per cell, centred


def test_gradcam_elementwise_hand():
    # ReLU(G0 A0) = 0 (G0 < 0 <= A0), ReLU(G1 A1) = A1 / 2
    exp = vx.explain(HandCamNet(), HAND_X, method="gradcam_elementwise")
    close(exp.layer_maps, [[[1.0, 0.0], [0.0, 0.5]]])
    # class 0: G = (1/4, -1/4): ReLU(A0 / 4) + ReLU(-A1 / 4) = A0 / 4, where HiResCAM sums signed products
    close(vx.explain(HandCamNet(), HAND_X, method="gradcam_elementwise", targets=0).layer_maps, [[[0.5, 0.25], [0.0, 0.75]]])
    close(vx.explain(HandCamNet(), HAND_X, method="hirescam", targets=0).layer_maps, [[[0.0, 0.25], [0.0, 0.5]]])


def test_eigengradcam_hand():
    # G ⊙ A = (-A0/8, A1/2): with constant gradients the same contributions as Grad-CAM's eigen_smooth
    exp = vx.explain(HandCamNet(), HAND_X, method="eigengradcam")
    close(exp.layer_maps[0], hand_weighted_eigen(), atol=1e-6)
    assert "eigen_smooth" not in exp.options and exp.options["aug_smooth"] is False


def test_kpcacam_linear_kernel_is_eigencam_and_sigmoid_by_hand():
    linear = vx.explain(HandCamNet(), HAND_X, method="kpcacam", kernel="linear")
    close(linear.layer_maps, vx.explain(HandCamNet(), HAND_X, method="eigencam").layer_maps, atol=1e-6)
    # sigmoid, gamma = 1/C = 1/2: K = tanh(X X^T / 2 + 1), centred in feature space; the projection
    # is the top eigenvector times sqrt(its eigenvalue), oriented toward the centred channel sum.
    x = EIGEN_CENTRED
    k = np.tanh(x @ x.T / 2 + 1)
    j = np.full((4, 4), 0.25)
    kc = k - j @ k - k @ j + j @ k @ j
    values, vectors = np.linalg.eigh(kc)
    projection = vectors[:, -1] * np.sqrt(values[-1])
    projection *= np.sign(projection @ x.sum(axis=1))
    exp = vx.explain(HandCamNet(), HAND_X, method="kpcacam")
    assert exp.options["kernel"] == "sigmoid" and exp.options["gamma"] == 0.5
    close(exp.layer_maps[0], projection.reshape(2, 2), atol=1e-6)
    close(vx.explain(HandCamNet(), HAND_X, method="kpcacam", targets=2).maps, exp.maps)  # class-agnostic


@pytest.mark.parametrize("option, value", [("kernel", "laplacian"), ("gamma", 0), ("gamma", -1.0)])
def test_kpcacam_bad_options(option, value):
    with pytest.raises(vx.InvalidOption, match=option):
        vx.explain(HandCamNet(), HAND_X, method="kpcacam", **{option: value})


def test_kpcacam_runs_on_onnx():
    model, x = seeded_cnn(seed=2), images(3, size=16, seed=3)
    onnx = vx.adapt(onnx_bytes(model, (3, 16, 16)))
    assert "onnx" in next(m for m in vx.methods() if m.name == "kpcacam").backends
    close(vx.explain(onnx, x, method="kpcacam", kernel="rbf").maps, vx.explain(model, x, method="kpcacam", kernel="rbf").maps, atol=1e-5)


# ---------------------------------------------------------------------- pytorch-grad-cam agreement


def test_eigengradcam_agrees_with_pytorch_grad_cam(monkeypatch):
    pgc = pytorch_grad_cam()
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    module = sys.modules[pgc.EigenGradCAM.__module__]
    monkeypatch.setattr(module, "get_2d_projection", oriented(module.get_2d_projection))
    model, x, targets = seeded_cnn(seed=2), images(4, size=16, seed=3), [0, 1, 2, 3]
    with pgc.EigenGradCAM(model=model, target_layers=[model.features]) as cam:
        reference = cam(input_tensor=torch.from_numpy(x), targets=[ClassifierOutputTarget(t) for t in targets])
    exp = vx.explain(model, x, method="eigengradcam", targets=targets)
    # pytorch-grad-cam: ReLU at layer size, then resize and min-max; vexplain's map is signed
    relu_up = F.interpolate(torch.relu(torch.from_numpy(exp.layer_maps))[:, None], size=(16, 16), mode="bilinear", align_corners=False)[:, 0]
    assert (exp.layer_maps < 0).any() and reference.std() > 0.1
    close(vx.Explanation.normalized(_with_maps(exp, relu_up.numpy()), "minmax"), reference, atol=1e-5)


def _with_maps(exp, maps):
    import dataclasses

    return dataclasses.replace(exp, maps=maps)


@pytest.mark.parametrize("kernel", ["sigmoid", "rbf", "poly", "cosine"])
def test_kpcacam_agrees_with_pytorch_grad_cam_up_to_sign(kernel):
    pytorch_grad_cam()
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection_kernel

    from vexplain.plugins.kpcacam import kernel_first_component

    acts = torch.relu(torch.from_numpy(np.random.default_rng(4).standard_normal((5, 6, 4, 4)).astype(np.float32)))
    ours = kernel_first_component(acts, kernel, 1 / 6).numpy()
    theirs = get_2d_projection_kernel(acts.numpy(), kernel, None)
    signs = np.where((ours * theirs).reshape(5, -1).sum(axis=1) < 0, -1.0, 1.0)
    assert np.abs(theirs).max() > 1e-3
    close(ours * signs[:, None, None], theirs, atol=1e-5)


def test_kpcacam_full_pipeline_agrees_with_pytorch_grad_cam(monkeypatch):
    pgc = pytorch_grad_cam()
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    module = sys.modules[pgc.KPCA_CAM.__module__]
    original = module.get_2d_projection_kernel

    def oriented_kernel(batch, kernel, gamma):
        out = original(batch, kernel, gamma)
        sums = batch.sum(axis=1).reshape(len(batch), -1)
        sums = sums - sums.mean(axis=1, keepdims=True)
        return np.float32(out * np.where((out.reshape(len(out), -1) * sums).sum(axis=1) < 0, -1.0, 1.0)[:, None, None])

    monkeypatch.setattr(module, "get_2d_projection_kernel", oriented_kernel)
    model, x = seeded_cnn(seed=2), images(4, size=16, seed=3)
    with pgc.KPCA_CAM(model=model, target_layers=[model.features]) as cam:
        reference = cam(input_tensor=torch.from_numpy(x), targets=[ClassifierOutputTarget(0)] * 4)
    exp = vx.explain(model, x, method="kpcacam")
    assert (exp.layer_maps < 0).any() and reference.std() > 0.1
    relu_up = F.interpolate(torch.relu(torch.from_numpy(exp.layer_maps))[:, None], size=(16, 16), mode="bilinear", align_corners=False)[:, 0]
    close(vx.Explanation.normalized(_with_maps(exp, relu_up.numpy()), "minmax"), reference, atol=1e-5)
