"""Finer-CAM: hand-computed values on the fixed-weight model (tests/models.py ``HandCamNet``: at
layer ``features`` A0 = [[2, 1], [0, 3]], A1 = [[2, 0], [0, 1]], pooled g = (1.5, 0.75), scores
y = W g + b = (0.75, 0.85, 0.55), ∂y_j/∂A_k = W_jk / 4 at every pixel) and agreement with
pytorch-grad-cam 1.5.7's ``FinerCAM`` on a seeded CNN."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import vexplain as vx
from models import HAND_FC_B, HAND_FC_W, HAND_X, HandCamNet, close, images, seeded_cnn
from pgc_reference import pytorch_grad_cam

A0, A1 = np.array([[2.0, 1.0], [0.0, 3.0]]), np.array([[2.0, 0.0], [0.0, 1.0]])


def hand_map(score_of_y, target: int = 1) -> np.ndarray:
    """ReLU(Σ_k α_k A_k), α = Wᵀ ∂S/∂y / 4, with ∂S/∂y by central differences in float64."""
    y = HAND_FC_W.astype(np.float64) @ np.array([1.5, 0.75]) + HAND_FC_B
    grad = np.array([(score_of_y(y + h) - score_of_y(y - h)) / 2e-6 for h in np.eye(3) * 1e-6])
    alpha = HAND_FC_W.T.astype(np.float64) @ grad / 4
    return np.maximum(alpha[0] * A0 + alpha[1] * A1, 0)


def test_one_reference_is_grad_cam_of_the_logit_difference():
    # top class 1 (0.85); the closest other class is 0 (|0.75 - 0.85| = 0.1 < 0.3):
    # S = y1 - y0, α = (W1 - W0) / 4 = (-0.375, 0.75): ReLU(-0.375 A0 + 0.75 A1)
    exp = vx.explain(HandCamNet(), HAND_X, method="finercam", references=1)
    close(exp.layer_maps, [[[0.75, 0.0], [0.0, 0.0]]], atol=1e-6)
    assert exp.targets.tolist() == [1] and exp.options["reference_classes"] == [[0]]
    close(exp.scores, [[0.75, 0.85, 0.55]], atol=1e-6)  # the model's class scores, not S


def test_default_references_with_softmax_weights_by_hand():
    # K = 3: references clamp to the 2 other classes (with a warning); alpha 0.5
    def score(y):
        p = np.exp(y - y.max()) / np.exp(y - y.max()).sum()
        d = [0, 2]
        return sum(p[j] * (y[1] - 0.5 * y[j]) for j in d) / (p[d].sum() + 1e-9)

    exp = vx.explain(HandCamNet(), HAND_X, method="finercam", alpha=0.5)
    close(exp.layer_maps[0], hand_map(score), atol=1e-5)
    assert exp.options["reference_classes"] == [[0, 2]] and any("references=3" in w for w in exp.warnings)
    # alpha = 0: S = y_t exactly, i.e. Grad-CAM
    zero = vx.explain(HandCamNet(), HAND_X, method="finercam", alpha=0.0, targets=2)
    close(zero.layer_maps, vx.explain(HandCamNet(), HAND_X, method="gradcam", targets=2).layer_maps, atol=1e-6)


def test_per_input_targets_match_one_call_per_image():
    model, x = seeded_cnn(seed=2), images(5, size=16, seed=3)
    targets = [0, 3, 0, 1, 4]
    together = vx.explain(model, x, method="finercam", targets=targets)
    for i, t in enumerate(targets):
        alone = vx.explain(model, x[i : i + 1], method="finercam", targets=t)
        close(together.maps[i], alone.maps[0], atol=1e-5)
        assert together.options["reference_classes"][i] == alone.options["reference_classes"][0]
    assert together.targets.tolist() == targets


@pytest.mark.parametrize("options, error", [({"alpha": -1.0}, vx.InvalidOption), ({"references": 0}, vx.InvalidOption),
                                            ({"aug_smooth": True}, vx.InvalidOption)])
def test_bad_options(options, error):
    with pytest.raises(error, match=next(iter(options))):
        vx.explain(HandCamNet(), HAND_X, method="finercam", **options)


def test_callable_target_refused():
    with pytest.raises(vx.InvalidTarget, match="class indices"):
        vx.explain(HandCamNet(), HAND_X, method="finercam", targets=lambda out: out[:, 0])


@pytest.mark.parametrize("flags", [{}, {"eigen_smooth": True}], ids=str)
def test_agrees_with_pytorch_grad_cam(flags, monkeypatch):
    pgc = pytorch_grad_cam()
    model, x = seeded_cnn(seed=2), images(4, size=16, seed=3)
    if flags:
        import sys

        from test_cams_smoothing import oriented

        module = sys.modules[pgc.GradCAM.__mro__[1].__module__]
        monkeypatch.setattr(module, "get_2d_projection", oriented(module.get_2d_projection))
    references = []
    for i in range(len(x)):
        with pgc.FinerCAM(model=model, target_layers=[model.features]) as cam:
            references.append(cam(input_tensor=torch.from_numpy(x[i : i + 1]), target_idx=i % 5, alpha=0.7, **flags)[0])
    exp = vx.explain(model, x, method="finercam", targets=[i % 5 for i in range(len(x))], alpha=0.7, **flags)
    assert np.std(references) > 0.1
    close(exp.normalized("minmax"), np.stack(references), atol=1e-5)
