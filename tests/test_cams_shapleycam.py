"""ShapleyCAM: hand-computed weights on the fixed-weight model (tests/models.py ``HandCamNet``: at
layer ``features`` A0 = [[2, 1], [0, 3]], A1 = [[2, 0], [0, 1]], y = W mean(A) + b = (0.75, 0.85,
0.55)) with a quadratic target, the Hessian-vector product against a float64 finite difference,
and agreement with pytorch-grad-cam 1.5.7's ``ShapleyCAM`` (logit and ReST targets)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import vexplain as vx
from vexplain.core.targets import TargetRequest

from models import HAND_X, HandCamNet, assert_untouched, close, hook_counts, images, onnx_bytes, seeded_cnn, snapshot
from pgc_reference import pytorch_grad_cam


def test_hand_computed_with_a_quadratic_target():
    # S = y1², y1 = Σ_k W1k mean(A_k) + b1: ∂S/∂A_k = 2 y1 W1k / 4, H·A at (k, p) = 2 (W1k / 4)(y1 − b1),
    # so w_k = (W1k / 4)(y1 + b1) = (−0.125, 0.5) · 0.95 = (−0.11875, 0.475)
    exp = vx.explain(HandCamNet(), HAND_X, method="shapleycam", targets=lambda out: out[:, 1] ** 2)
    close(exp.layer_maps, [[[0.7125, 0.0], [0.0, 0.11875]]], atol=1e-6)
    # Grad-CAM of the same score: w = 2 · 0.85 · (−0.125, 0.5)
    grad = vx.explain(HandCamNet(), HAND_X, method="gradcam", targets=lambda out: out[:, 1] ** 2)
    close(grad.layer_maps, [[[1.275, 0.0], [0.0, 0.2125]]], atol=1e-6)


def test_piecewise_linear_score_equals_gradcam_with_a_warning():
    model, x = seeded_cnn(seed=2), images(4, size=16, seed=3)
    exp = vx.explain(model, x, method="shapleycam")
    close(exp.maps, vx.explain(model, x, method="gradcam").maps, atol=1e-6)
    assert any("equals Grad-CAM" in w and "score='rest'" in w for w in exp.warnings)


class GeluCNN(nn.Module):
    """conv → GELU → conv → GELU → pool → linear: curvature after the first convolution."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.GELU(), nn.Conv2d(6, 8, 3, padding=1, stride=2), nn.GELU())
        self.fc = nn.Linear(8, 5)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


def test_hessian_product_matches_finite_differences():
    model, x = GeluCNN(), torch.from_numpy(images(2, size=8, seed=1))
    result = vx.adapt(model).activation_hessian(x, "features.0", TargetRequest([1, 3], 2))
    a = result.activations.double()
    tail = model.double()
    try:
        def grad_at(acts):
            acts = acts.clone().requires_grad_(True)
            y = tail.fc(tail.features[1:](acts).mean(dim=(2, 3)))
            return torch.autograd.grad(y[[0, 1], [1, 3]].sum(), acts)[0]

        h = 1e-4
        expected = (grad_at(a + h * a) - grad_at(a - h * a)) / (2 * h)  # H·A by central differences
        close(result.gradients, grad_at(a), atol=1e-5)
    finally:
        model.float()
    assert float(expected.abs().max()) > 1e-3
    close(result.hessian_products, expected, atol=1e-5)


@pytest.mark.parametrize("case", ["gelu-logit", "relu-rest", "relu-logit-eigen"])
def test_agrees_with_pytorch_grad_cam(case, monkeypatch):
    pgc = pytorch_grad_cam()
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputReST, ClassifierOutputTarget

    targets = [0, 3, 1, 4]
    if case.startswith("gelu"):
        model, x, layer = GeluCNN(), images(4, size=16, seed=3), "features.0"
    else:
        model, x, layer = seeded_cnn(seed=2), images(4, size=16, seed=3), "features"
    score = "rest" if "rest" in case else "logit"
    wrap = ClassifierOutputReST if score == "rest" else ClassifierOutputTarget
    flags = {"eigen_smooth": True} if "eigen" in case else {}
    if flags:  # pytorch-grad-cam keeps the SVD's sign; vexplain orients it toward the channel sum
        import sys

        from test_cams_smoothing import oriented

        module = sys.modules[pgc.GradCAM.__mro__[1].__module__]
        monkeypatch.setattr(module, "get_2d_projection", oriented(module.get_2d_projection))
    with pgc.ShapleyCAM(model=model, target_layers=[model.get_submodule(layer)]) as cam:
        reference = cam(input_tensor=torch.from_numpy(x), targets=[wrap(t) for t in targets], **flags)
    exp = vx.explain(model, x, method="shapleycam", targets=targets, layer=layer, score=score, **flags)
    assert np.std(reference) > 0.1
    close(exp.normalized("minmax"), reference, atol=1e-4)
    assert exp.options["score"] == score


def test_rest_differs_from_logit_and_keeps_class_scores():
    model, x = seeded_cnn(seed=2), images(3, size=16, seed=3)
    rest = vx.explain(model, x, method="shapleycam", score="rest", targets=[0, 2, 2])
    logit = vx.explain(model, x, method="shapleycam", targets=[0, 2, 2])
    close(rest.scores, logit.scores, atol=1e-6)
    assert rest.targets.tolist() == [0, 2, 2] and np.abs(rest.maps - logit.maps).max() > 1e-3


def test_model_safety_and_errors():
    model = GeluCNN()
    before, hooks = snapshot(model), hook_counts(model)
    vx.explain(model, images(2, size=16), method="shapleycam", layer="features.0")
    assert_untouched(model, before)
    assert hook_counts(model) == hooks
    with pytest.raises(vx.InvalidOption, match="score"):
        vx.explain(model, images(1, size=16), method="shapleycam", score="softmax")
    with pytest.raises(vx.InvalidTarget, match="rest"):
        vx.explain(model, images(1, size=16), method="shapleycam", score="rest", targets=lambda out: out[:, 0])
    onnx = vx.adapt(onnx_bytes(seeded_cnn(seed=2), (3, 16, 16)))
    with pytest.raises(vx.UnsupportedCapability, match="activation_hessian"):
        vx.explain(onnx, images(1), method="shapleycam")


def test_token_grid_layer_by_hand():
    # a ViT block's (N, 1 + 16, D) tokens read as a (D, 4, 4) grid; LayerNorm, attention and GELU
    # after it give H·A ≠ 0 (pytorch-grad-cam's ShapleyCAM cannot take a reshape_transform: it
    # applies it to the weights but not to the activations it weights)
    from vit_models import inputs as vit_inputs, plain_vit

    model, x, targets = plain_vit(seed=2), vit_inputs(3, seed=4), [0, 2, 4]
    exp = vx.explain(model, x, method="shapleycam", layer="blocks.0", targets=targets)
    assert tuple(exp.options["grid"]) == (4, 4) and exp.options["prefix"] == 1
    assert not any("equals Grad-CAM" in w for w in exp.warnings)
    raw = vx.adapt(model).activation_hessian(x, "blocks.0", TargetRequest(targets, 3))

    def grid(tokens):
        return tokens[:, 1:].reshape(len(tokens), 4, 4, -1).permute(0, 3, 1, 2)

    a, g, ha = grid(raw.activations), grid(raw.gradients), grid(raw.hessian_products)
    assert float(ha.abs().max()) > 1e-4
    weights = (g - 0.5 * ha).mean(dim=(2, 3))
    close(exp.layer_maps, torch.relu((weights[:, :, None, None] * a).sum(dim=1)), atol=1e-5)
