"""Each built-in method against values computed by hand on tiny fixed-weight models.

The CAM model (tests/models.py ``HandCamNet``): input x (1x4x4), conv 2x2 stride 2 without bias
(channel 0 kernel [[1,0],[0,1]], channel 1 kernel [[0,1],[-1,0]]), ReLU, global average pool,
Linear W = [[1,-1],[-0.5,2],[0.25,0.5]], b = [0, 0.1, -0.2].

    x = [[ 1,  2,  0, -1],      2x2 blocks:  B00 = [[1,2],[0,1]]    B01 = [[0,-1],[3,1]]
         [ 0,  1,  3,  1],                   B10 = [[-2,0],[1,-1]]  B11 = [[1,1],[0,2]]
         [-2,  0,  1,  1],
         [ 1, -1,  0,  2]]
    z0 (diagonal sums)      = [[2, 1], [-3, 3]]   ->  A0 = ReLU(z0) = [[2, 1], [0, 3]]
    z1 (top-right - bot-left) = [[2, -4], [-1, 1]] ->  A1 = ReLU(z1) = [[2, 0], [0, 1]]
    GAP: g = (6/4, 3/4) = (1.5, 0.75)
    scores y = W g + b = (0.75, 0.85, 0.55)        ->  top class 1

Bilinear upsampling 2 -> 4 with align_corners=False samples source row (i + 0.5) / 2 - 0.5 =
-0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to the last row), so each axis uses
U = [[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]] and map = U L U^T.
"""
from __future__ import annotations

import numpy as np
import pytest

import vexplain as vx
from models import HAND_X, HandCamNet, LinearNet, close

U = np.array([[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]], dtype=np.float32)



def test_hand_model_scores_and_upsampling_matrix():
    exp = vx.explain(HandCamNet(), HAND_X, method="cam")
    close(exp.scores, [[0.75, 0.85, 0.55]])
    assert exp.targets.tolist() == [1]
    # sanity of U itself: each row interpolates, rows sum to 1
    close(U.sum(axis=1), np.ones(4))


# ------------------------------------------------------------------------------------ CAM


def test_cam_top_class_raw_and_negative():
    # class 1: L = -0.5 A0 + 2 A1 = [[-1 + 4, -0.5 + 0], [0 + 0, -1.5 + 2]] = [[3, -0.5], [0, 0.5]]
    # no ReLU: the -0.5 stays. Upsampled: rows U L = [3,-.5], [2.25,-.25], [.75,.25], [0,.5];
    # then each row [a, b] -> [a, .75a + .25b, .25a + .75b, b].
    exp = vx.explain(HandCamNet(), HAND_X, method="cam")
    assert exp.method == "cam" and exp.options["layer"] == "features"
    close(exp.layer_maps, [[[3.0, -0.5], [0.0, 0.5]]])
    close(
        exp.maps,
        [[[3.0, 2.125, 0.375, -0.5], [2.25, 1.625, 0.375, -0.25], [0.75, 0.625, 0.375, 0.25], [0.0, 0.125, 0.375, 0.5]]],
    )
    assert exp.maps.min() < 0  # raw: CAM may be negative
    assert exp.maps.dtype == np.float32 and exp.maps.shape == (1, 4, 4)
    assert exp.attributions is None


def test_cam_other_target():
    # class 0: L = A0 - A1 = [[0, 1], [0, 2]]; U L = [0,1], [0,1.25], [0,1.75], [0,2]
    exp = vx.explain(HandCamNet(), HAND_X, method="cam", targets=0)
    assert exp.targets.tolist() == [0]
    close(exp.layer_maps, [[[0.0, 1.0], [0.0, 2.0]]])
    close(exp.maps, [[[0, 0.25, 0.75, 1], [0, 0.3125, 0.9375, 1.25], [0, 0.4375, 1.3125, 1.75], [0, 0.5, 1.5, 2]]])


def test_cam_at_a_named_layer_before_relu():
    # layer features.0 = z (pre-ReLU): L = -0.5 z0 + 2 z1 = [[-1 + 4, -0.5 - 8], [1.5 - 2, -1.5 + 2]]
    exp = vx.explain(HandCamNet(), HAND_X, method="cam", layer="features.0")
    assert exp.options["layer"] == "features.0"
    close(exp.layer_maps, [[[3.0, -8.5], [-0.5, 0.5]]])
    close(exp.maps[0], U @ np.array([[3.0, -8.5], [-0.5, 0.5]]) @ U.T)


# -------------------------------------------------------------------------------- Grad-CAM


def test_gradcam_default_layer_relu():
    # dy_t/dA_k(i, j) = W[t, k] / 4 everywhere (GAP over 4 cells), so alpha_k = W[t, k] / 4 and
    # Grad-CAM = ReLU(L / 4) for class 1 = ReLU([[0.75, -0.125], [0, 0.125]]) = [[0.75, 0], [0, 0.125]].
    # Upsampled: U L = [.75,0], [.5625,.03125], [.1875,.09375], [0,.125], then columns as above.
    exp = vx.explain(HandCamNet(), HAND_X, method="gradcam")
    assert exp.targets.tolist() == [1]
    close(exp.layer_maps, [[[0.75, 0.0], [0.0, 0.125]]])
    close(
        exp.maps,
        [
            [
                [0.75, 0.5625, 0.1875, 0.0],
                [0.5625, 0.4296875, 0.1640625, 0.03125],
                [0.1875, 0.1640625, 0.1171875, 0.09375],
                [0.0, 0.03125, 0.09375, 0.125],
            ]
        ],
    )
    assert exp.maps.min() >= 0


def test_gradcam_before_relu_uses_gradient_means():
    # layer features.0 = z: dy/dz_k = W[t,k]/4 * [z_k > 0]; z0 has 3 of 4 cells active, z1 2 of 4.
    # alpha_0 = (-0.5/4) * 3/4 = -0.09375, alpha_1 = (2/4) * 2/4 = 0.25
    # sum = -0.09375 z0 + 0.25 z1 = [[0.3125, -1.09375], [0.03125, -0.03125]] -> ReLU
    exp = vx.explain(HandCamNet(), HAND_X, method="gradcam", layer="features.0", targets=[1])
    close(exp.layer_maps, [[[0.3125, 0.0], [0.03125, 0.0]]])
    close(exp.maps[0], U @ np.array([[0.3125, 0.0], [0.03125, 0.0]]) @ U.T)


# -------------------------------------------------------------------------------- saliency

# dy_t/dx(p) = sum_k W[t,k]/4 * [z_k(block of p) > 0] * kernel_k(offset of p). For class 1:
# c0 = -0.5/4 = -0.125, c1 = 2/4 = 0.5; active: z0 -> [[1,1],[0,1]], z1 -> [[1,0],[0,1]].
#   B00 (both active): -0.125 [[1,0],[0,1]] + 0.5 [[0,1],[-1,0]] = [[-0.125, 0.5], [-0.5, -0.125]]
#   B01 (z0 only):     [[-0.125, 0], [0, -0.125]]
#   B10 (none):        zeros
#   B11 (both):        as B00
HAND_GRADIENT = np.array(
    [
        [-0.125, 0.5, -0.125, 0.0],
        [-0.5, -0.125, 0.0, -0.125],
        [0.0, 0.0, -0.125, 0.5],
        [0.0, 0.0, -0.5, -0.125],
    ],
    dtype=np.float32,
)


def test_saliency_hand_cnn_abs_default():
    exp = vx.explain(HandCamNet(), HAND_X, method="saliency")
    assert exp.options["abs"] is True and exp.options["reduce"] == "max"
    close(exp.maps, np.abs(HAND_GRADIENT)[None])
    close(exp.attributions, np.abs(HAND_GRADIENT)[None, None])
    assert exp.layer_maps is None


def test_saliency_hand_cnn_signed():
    exp = vx.explain(HandCamNet(), HAND_X, method="saliency", abs=False)
    close(exp.maps, HAND_GRADIENT[None])
    close(exp.attributions, HAND_GRADIENT[None, None])


# A linear model on (2, 2, 2) inputs: the gradient is the weight row itself, whatever x is.
# class 0: channel 0 = [[1, -2], [0.5, 3]], channel 1 = [[-4, 1], [0.25, -1]]; class 1 = -class 0.
LIN_C0 = np.array([[1.0, -2.0], [0.5, 3.0]])
LIN_C1 = np.array([[-4.0, 1.0], [0.25, -1.0]])
LIN_W = np.stack([np.concatenate([LIN_C0.ravel(), LIN_C1.ravel()]), -np.concatenate([LIN_C0.ravel(), LIN_C1.ravel()])])


@pytest.mark.parametrize(
    "abs_, reduce, target, expected",
    [
        # |c0| = [[1,2],[.5,3]], |c1| = [[4,1],[.25,1]]
        (True, "max", 0, [[4, 2], [0.5, 3]]),
        (True, "sum", 0, [[5, 3], [0.75, 4]]),
        (True, "mean", 0, [[2.5, 1.5], [0.375, 2]]),
        (True, "max", 1, [[4, 2], [0.5, 3]]),  # |-g| = |g|
        (False, "max", 0, [[1, 1], [0.5, 3]]),  # max(c0, c1)
        (False, "sum", 0, [[-3, -1], [0.75, 2]]),
        (False, "mean", 0, [[-1.5, -0.5], [0.375, 1]]),
        (False, "max", 1, [[4, 2], [-0.25, 1]]),  # max(-c0, -c1) = -min(c0, c1)
        (False, "sum", 1, [[3, 1], [-0.75, -2]]),
    ],
)
def test_saliency_reduce_options(abs_, reduce, target, expected):
    x = np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2) - 3.0
    exp = vx.explain(LinearNet(LIN_W), x, method="saliency", targets=target, abs=abs_, reduce=reduce)
    close(exp.maps, [expected])
    signed = np.stack([LIN_C0, LIN_C1]) * (1 if target == 0 else -1)
    close(exp.attributions, [np.abs(signed) if abs_ else signed])
    assert exp.options["reduce"] == reduce and exp.options["abs"] is abs_


# ------------------------------------------------------------------------------- occlusion

# On a linear model y = sum(V * x) + b, occluding window S with baseline β drops the score by
# Δ(S) = sum_{p in S} V_p (x_p - β), and each pixel's value is the mean Δ of the windows covering it.

OCC_V = np.array([[1.0, 2.0, 0.0], [0.0, -1.0, 3.0], [2.0, 0.0, 1.0]])


@pytest.mark.parametrize("engine", ["torch", "onnx"])
@pytest.mark.parametrize("baseline, scale", [(1.0, 1.0), (0.0, 2.0), (-1.0, 3.0)])
def test_occlusion_overlapping_windows_average(engine, baseline, scale):
    # x = 2 everywhere, so c = V (x - β) = (2 - β) V. With β = 1, c = V and the 2x2 windows at
    # stride 1 have sums S(0,0) = 1+2+0-1 = 2, S(0,1) = 2+0-1+3 = 4, S(1,0) = 0-1+2+0 = 1,
    # S(1,1) = -1+3+0+1 = 3. Pixel means: corners see one window, edge midpoints two, the centre
    # all four: (2+4+1+3)/4 = 2.5.
    weight = np.stack([OCC_V.ravel(), np.zeros(9)])
    x = np.full((1, 1, 3, 3), 2.0, dtype=np.float32)
    exp = vx.explain(LinearNet(weight), x, method="occlusion", targets=0, window=2, stride=1, baseline=baseline, engine=engine)
    expected = np.array([[2, 3, 4], [1.5, 2.5, 3.5], [1, 2, 3]]) * scale
    close(exp.maps, [expected], atol=1e-5)
    assert exp.options["window"] == (2, 2) and exp.options["stride"] == (1, 1)
    assert exp.options["windows"] == 4 and exp.options["engine"] == engine
    assert exp.options["baseline"] == baseline


@pytest.mark.parametrize("engine", ["torch", "onnx"])
def test_occlusion_flush_window_at_far_edge_1d(engine):
    # 1x5 image of ones, V = [1, 2, 3, 4, 5], window (1, 2), stride (1, 2): starts 0, 2 and then
    # 3 (flush with the edge, since 5 - 2 = 3 is not a multiple of 2). Δ = 3, 7, 9.
    # Pixels: 0,1 -> 3; 2 -> 7; 3 -> (7 + 9) / 2 = 8; 4 -> 9.
    weight = np.array([[1.0, 2.0, 3.0, 4.0, 5.0]])
    x = np.ones((1, 1, 1, 5), dtype=np.float32)
    exp = vx.explain(LinearNet(weight), x, method="occlusion", window=(1, 2), stride=(1, 2), engine=engine)
    close(exp.maps, [[[3, 3, 7, 8, 9]]], atol=1e-5)
    assert exp.options["windows"] == 3


def test_occlusion_flush_window_at_far_edge_2d():
    # V = a a^T with a = [1..5], x = ones, window 2, stride 2 -> starts {0, 2, 3} on both axes.
    # Δ(rows R, cols C) = (sum_R a)(sum_C a) and the covering windows are all pairs of covering
    # row and column windows, so the map is the outer product of the 1-D result [3, 3, 7, 8, 9].
    a = np.arange(1.0, 6.0)
    weight = np.outer(a, a).reshape(1, 25)
    x = np.ones((1, 1, 5, 5), dtype=np.float32)
    exp = vx.explain(LinearNet(weight), x, method="occlusion", window=2, stride=2)
    one_d = np.array([3.0, 3.0, 7.0, 8.0, 9.0])
    close(exp.maps, [np.outer(one_d, one_d)], atol=1e-4)
    assert exp.options["windows"] == 9


def test_occlusion_on_hand_cnn_equals_block_cam():
    # window 2 stride 2 occludes exactly one conv block: both channels of that cell go to z = 0,
    # so Δ = sum_k W[t,k] A_k(cell) / 4 = L / 4 = [[0.75, -0.125], [0, 0.125]] per 2x2 block.
    exp = vx.explain(HandCamNet(), HAND_X, method="occlusion", window=2, stride=2)
    assert exp.targets.tolist() == [1]
    close(exp.maps[0], np.kron(np.array([[0.75, -0.125], [0.0, 0.125]]), np.ones((2, 2))))


def test_occlusion_default_window_and_stride():
    # defaults: window = min(H, W) // 8 = 2 for 16x16 (at least 1), stride = window // 2 = 1
    weight = np.ones((2, 256))
    exp = vx.explain(LinearNet(weight), np.ones((1, 1, 16, 16), dtype=np.float32), method="occlusion")
    assert exp.options["window"] == (2, 2) and exp.options["stride"] == (1, 1)
    assert exp.options["baseline"] == 0.0 and exp.options["windows"] == 15 * 15
    # every window holds 4 ones with weight 1 -> Δ = 4 everywhere
    close(exp.maps, np.full((1, 16, 16), 4.0), atol=1e-5)
