"""The CAM family beyond CAM and Grad-CAM: hand-computed values on the fixed-weight model, the
published formulas (pytorch-grad-cam's definitions, re-derived in numpy) on fixed tensors, and
multi-layer CAM.

Hand model (tests/models.py ``HandCamNet``, worked through in test_hand_computed.py): at the
default layer ``features`` (after the ReLU), A0 = [[2, 1], [0, 3]], A1 = [[2, 0], [0, 1]], pooled
g = (1.5, 0.75), scores y = (0.75, 0.85, 0.55), top class 1. For class t the gradient of y_t with
respect to A_k is W[t, k] / 4 at every location: for class 1, G0 = -0.125, G1 = 0.5.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import vexplain as vx
from models import HAND_CONV, HAND_FC_B, HAND_FC_W, HAND_X, HandCamNet, close, images, seeded_cnn
from vexplain.core.targets import TargetRequest

U = np.array([[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]])
A0 = np.array([[2.0, 1.0], [0.0, 3.0]])
A1 = np.array([[2.0, 0.0], [0.0, 1.0]])



def hand(method, **options):
    exp = vx.explain(HandCamNet(), HAND_X, method=method, **options)
    assert exp.targets.tolist() == [1] and exp.options["layer"] == "features"
    return exp


# ------------------------------------------------------------------------ hand-computed values


def test_gradcam_plusplus_hand():
    # alpha_k = G^2 / (2 G^2 + S_k G^3), S0 = sum A0 = 6, S1 = sum A1 = 3.
    # k = 0: G = -1/8 < 0, so ReLU(G) = 0 and w0 = 0 (alpha0 = (1/64) / (2/64 - 6/512) = 0.8 is unused).
    # k = 1: alpha1 = (1/4) / (2/4 + 3/8) = 2/7; w1 = 4 cells * ReLU(1/2) * 2/7 = 4/7.
    # map = ReLU(4/7 A1) = [[8/7, 0], [0, 4/7]]
    exp = hand("gradcam_plusplus")
    close(exp.layer_maps, [[[8 / 7, 0.0], [0.0, 4 / 7]]], atol=1e-5)
    close(exp.maps[0], U @ np.array([[8 / 7, 0.0], [0.0, 4 / 7]]) @ U.T, atol=1e-5)


def test_hirescam_hand_is_cam_over_cells_and_signed():
    # sum_k G_k A_k = -1/8 A0 + 1/2 A1 = [[0.75, -0.125], [0, 0.125]] = CAM / 4 (no ReLU: HiResCAM
    # generalises CAM)
    exp = hand("hirescam")
    close(exp.layer_maps, [[[0.75, -0.125], [0.0, 0.125]]])
    cam = vx.explain(HandCamNet(), HAND_X, method="cam")
    close(exp.maps, cam.maps / 4)


def test_xgradcam_hand():
    # w_k = sum_ij G_k A_k,ij / sum_ij A_k,ij = G_k (constant gradient), so the map is Grad-CAM's:
    # ReLU(-1/8 A0 + 1/2 A1) = [[0.75, 0], [0, 0.125]]
    exp = hand("xgradcam")
    close(exp.layer_maps, [[[0.75, 0.0], [0.0, 0.125]]], atol=1e-6)


def test_layercam_hand():
    # ReLU(G0) A0 + ReLU(G1) A1 = 0 + 1/2 A1 = [[1, 0], [0, 0.5]]
    exp = hand("layercam")
    close(exp.layer_maps, [[[1.0, 0.0], [0.0, 0.5]]])


def test_eigencam_hand():
    # Points (A0, A1) per location: (2,2), (1,0), (0,0), (3,1); means (1.5, 0.75); centred:
    # (.5, 1.25), (-.5, -.75), (-1.5, -.75), (1.5, .25). X^T X = [[5, 2.5], [2.5, 2.75]]:
    # lambda1 = (7.75 + sqrt(7.75^2 - 4 * 7.5)) / 2, v1 ∝ (2.5, lambda1 - 5). Projection X v1, with
    # the sign making it correlate positively with the centred channel sum (1.75, -1.25, -2.25, 1.75).
    lam = (7.75 + math.sqrt(7.75**2 - 30.0)) / 2
    v = np.array([2.5, lam - 5.0])
    v /= np.linalg.norm(v)
    centred = np.array([[0.5, 1.25], [-0.5, -0.75], [-1.5, -0.75], [1.5, 0.25]])
    expected = (centred @ v).reshape(2, 2)
    assert expected[0, 0] > 0 and expected[1, 0] < 0
    exp = hand("eigencam")
    close(exp.layer_maps, [expected], atol=1e-5)
    # class-agnostic: any target gives the same map
    close(vx.explain(HandCamNet(), HAND_X, method="eigencam", targets=2).maps, exp.maps)


def hand_forward(x: np.ndarray) -> np.ndarray:
    """HandCamNet in numpy: 2x2/2 conv, ReLU, global mean, linear; x (B, 4, 4) -> scores (B, 3)."""
    blocks = x.reshape(-1, 2, 2, 2, 2).transpose(0, 1, 3, 2, 4)  # (B, bi, bj, 2, 2)
    z = np.einsum("bijuv,kuv->bkij", blocks, HAND_CONV[:, 0])
    pooled = np.maximum(z, 0).mean(axis=(2, 3))
    return pooled @ HAND_FC_W.T + HAND_FC_B


def test_hand_forward_matches_the_model():
    close(hand_forward(HAND_X[:, 0]), [[0.75, 0.85, 0.55]])


def test_scorecam_hand():
    # Masks: each A_k upsampled with U (align_corners=False), min-max scaled: M0 = U A0 U^T / 3,
    # M1 = U A1 U^T / 2 (both have min 0). Scores s_k = y_1(x * M_k) by the numpy forward above;
    # w = softmax(s); map = ReLU(w0 A0 + w1 A1).
    masks = np.stack([U @ A0 @ U.T / (3 + 1e-8), U @ A1 @ U.T / (2 + 1e-8)])
    s = hand_forward(HAND_X[:, 0] * masks)[:, 1]
    w = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
    expected = np.maximum(w[0] * A0 + w[1] * A1, 0)
    exp = hand("scorecam")
    close(exp.layer_maps, [expected], atol=1e-5)
    assert exp.options["masked_inputs"] == 2 and exp.options["engine"] in ("onnx", "torch")
    close(exp.layer_maps[0, 0, 0], 2.0, atol=1e-5)  # w0 + w1 = 1 and A0 = A1 = 2 there


def test_ablationcam_hand():
    # y_1 = 0.85. Zeroing A0: pooled (0, 0.75) -> y = 2 * 0.75 + 0.1 = 1.6, w0 = (0.85 - 1.6) / 0.85 = -15/17.
    # Zeroing A1: pooled (1.5, 0) -> y = -0.75 + 0.1 = -0.65, w1 = (0.85 + 0.65) / 0.85 = 30/17.
    # w0 A0 + w1 A1 = [[30/17, -15/17], [0, -15/17]] -> ReLU -> [[30/17, 0], [0, 0]]
    for engine_model in (HandCamNet(), vx.adapt(_hand_onnx())):
        exp = vx.explain(engine_model, HAND_X, method="ablationcam")
        close(exp.layer_maps, [[[30 / 17, 0.0], [0.0, 0.0]]], atol=1e-5)
        assert exp.options["ablated_forwards"] == 2 and exp.options["memory_mb"] == 1024
        assert exp.options["batch_size"] == 256  # 2x2x2 activations: the cap of the derived batch


def _hand_onnx() -> bytes:
    from models import onnx_bytes

    return onnx_bytes(HandCamNet(), (1, 4, 4))


# --------------------------------------------------------- published formulas on fixed tensors


def reference_weights(method: str, acts: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """pytorch-grad-cam's get_cam_weights / get_cam_image, re-derived in numpy (float64)."""
    if method == "gradcam_plusplus":
        g2, g3 = grads**2, grads**3
        alpha = g2 / (2 * g2 + acts.sum(axis=(2, 3), keepdims=True) * g3 + 1e-6)
        alpha = np.where(grads != 0, alpha, 0)
        return np.einsum("nc,nchw->nhw", (np.maximum(grads, 0) * alpha).sum(axis=(2, 3)), acts)
    if method == "xgradcam":
        weights = (grads * acts / (acts.sum(axis=(2, 3), keepdims=True) + 1e-7)).sum(axis=(2, 3))
        return np.einsum("nc,nchw->nhw", weights, acts)
    if method == "hirescam":
        return (grads * acts).sum(axis=1)
    if method == "layercam":
        return (np.maximum(grads, 0) * acts).sum(axis=1)
    if method == "gradcam":
        return np.einsum("nc,nchw->nhw", grads.mean(axis=(2, 3)), acts)
    raise AssertionError(method)


RELU = {"gradcam_plusplus": True, "xgradcam": True, "hirescam": False, "layercam": True, "gradcam": True}


@pytest.mark.parametrize("layer", ["features", "features.2"])
@pytest.mark.parametrize("method", sorted(RELU))
def test_gradient_variants_match_published_formulas(method, layer):
    model = seeded_cnn(seed=3)
    x = images(4, size=16, seed=11)
    targets = [0, 3, 1, 4]
    adapter = vx.adapt(model)
    fixed = adapter.activation_gradients(torch.from_numpy(x), layer, TargetRequest(targets, 4))
    acts, grads = fixed.activations.double().numpy(), fixed.gradients.double().numpy()
    assert np.abs(grads).max() > 1e-3 and (acts < 0).any() == (layer == "features.2")
    expected = reference_weights(method, acts, grads)
    if RELU[method]:
        expected = np.maximum(expected, 0)
    exp = vx.explain(model, x, method=method, targets=targets, layer=layer)
    assert np.abs(expected).max() > 1e-3
    close(exp.layer_maps, expected, atol=1e-5)
    close(exp.maps, torch.nn.functional.interpolate(torch.from_numpy(expected)[:, None], size=(16, 16), mode="bilinear", align_corners=False)[:, 0], atol=1e-5)


def test_eigencam_matches_svd_projection_up_to_sign():
    model = seeded_cnn(seed=3)
    x = images(3, size=16, seed=12)
    acts = vx.adapt(model).activations(torch.from_numpy(x), "features.2").activations.double().numpy()
    exp = vx.explain(model, x, method="eigencam", layer="features.2")
    for n in range(3):
        points = acts[n].reshape(acts.shape[1], -1).T
        points = points - points.mean(axis=0)
        _, _, vt = np.linalg.svd(points, full_matrices=True)
        projection = (points @ vt[0]).reshape(acts.shape[2:])
        sign = 1.0 if (projection.ravel() * points.sum(axis=1)).sum() >= 0 else -1.0
        close(exp.layer_maps[n], sign * projection, atol=1e-4)
        assert (projection.ravel() * sign * points.sum(axis=1)).sum() > 0


# ---------------------------------------------------------------------------- multi-layer CAM


def minmax(m: np.ndarray) -> np.ndarray:
    span = m.max() - m.min()
    return (m - m.min()) / span if span > 0 else np.zeros_like(m)


@pytest.mark.parametrize("layer", ["features.0,features", ["features.0", "features"], ("features.0", " features ")])
def test_multilayer_gradcam_hand(layer):
    # features.0 (pre-ReLU): L = ReLU([[0.3125, -1.09375], [0.03125, -0.03125]]) (test_hand_computed);
    # features: L = [[0.75, 0], [0, 0.125]]. Each upsampled, min-max scaled, then averaged.
    first = U @ np.array([[0.3125, 0.0], [0.03125, 0.0]]) @ U.T
    second = U @ np.array([[0.75, 0.0], [0.0, 0.125]]) @ U.T
    exp = vx.explain(HandCamNet(), HAND_X, method="gradcam", layer=layer)
    assert exp.options["layer"] == ["features.0", "features"]
    assert exp.layer_maps.shape == (1, 2, 4, 4)
    close(exp.layer_maps[0, 0], first)
    close(exp.layer_maps[0, 1], second)
    close(exp.maps[0], (minmax(first) + minmax(second)) / 2)


@pytest.mark.parametrize("method", ["cam", "hirescam", "eigencam", "scorecam", "ablationcam", "layercam"])
def test_multilayer_equals_per_layer_runs(method):
    model = seeded_cnn(seed=4)
    x = images(3, size=16, seed=13)
    layers = ["features.1", "features"] if method != "cam" else ["features", "features.3"]
    together = vx.explain(model, x, method=method, layer=layers, targets=[0, 1, 2])
    alone = [vx.explain(model, x, method=method, layer=name, targets=[0, 1, 2]) for name in layers]
    for i, single in enumerate(alone):
        close(together.layer_maps[:, i], single.maps, atol=1e-5)
    expected = np.mean([np.stack([minmax(m) for m in single.maps]) for single in alone], axis=0)
    close(together.maps, expected, atol=1e-5)


@pytest.mark.parametrize("layer, error", [("features,features", vx.InvalidOption), ("", vx.InvalidOption), (["features", 3], vx.InvalidOption), ("features,nope", vx.UnknownLayer)])
def test_bad_layer_lists(layer, error):
    with pytest.raises(error) as caught:
        vx.explain(HandCamNet(), HAND_X, method="gradcam", layer=layer)
    assert "\n" not in str(caught.value)


def test_options_are_recorded():
    exp = vx.explain(seeded_cnn(seed=0), images(2, size=16), method="scorecam", batch_size=5, engine="torch")
    assert exp.options["batch_size"] == 5 and exp.options["engine"] == "torch" and exp.options["masked_inputs"] == 32
    exp = vx.explain(seeded_cnn(seed=0), images(2, size=16), method="ablationcam", batch_size=3)
    assert exp.options["ablation_engine"] == "torch hook (prefix once)" and exp.options["ablated_forwards"] == 32


def test_cli_takes_several_layers(tmp_path):
    import cv2

    from vexplain.cli.main import main
    from vexplain.demo.model import ASSETS, WEIGHTS_FILE
    from vexplain.demo.scenes import generate_dataset

    image = tmp_path / "scene.png"
    cv2.imwrite(str(image), cv2.cvtColor(generate_dataset(1, seed=0)[0][0], cv2.COLOR_RGB2BGR))
    spec = ["vexplain.demo.model:build", str(image), "--weights", str(ASSETS / WEIGHTS_FILE), "--out", str(tmp_path)]
    assert main(["explain", *spec, "--method", "layercam", "--layer", "features.5,features"]) in (0, None)
    from_cli = np.load(tmp_path / "scene.layercam.npy")
    assert from_cli.shape == (64, 64) and 0 <= from_cli.min() and from_cli.max() <= 1  # mean of min-max maps
    assert main(["explain", *spec, "--method", "eigencam", "--option", "layer=features.5,features"]) in (0, None)
    assert np.load(tmp_path / "scene.eigencam.npy").shape == (64, 64)
