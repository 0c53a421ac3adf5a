"""Callable targets: ``targets=f`` where f maps the model's raw output to one score per input —
here a segmentation-style output (N, K, H, W) scored as class k summed over a mask.

On ``LinearSegNet`` (per-pixel y_k(p) = Σ_c W[k, c] x_c(p) + b_k) the score s = Σ_{p in M} y_k(p)
has gradient ∂s/∂x_c(p) = W[k, c] M(p): every gradient method has a hand value. On the nonlinear
``TinySegNet`` every registered method is checked against the same model wrapped so that it
returns the score as a one-class output.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import vexplain as vx
from vexplain.core.adapter import ATTENTION
from models import LinearSegNet, close, images, onnx_bytes, quick_options, seeded_cnn, tiny_seg_net

SEG_W = np.array([[1.0, -1.0], [2.0, 0.5], [-0.5, 3.0]])  # 3 classes x 2 channels
SEG_B = np.array([0.1, -0.2, 0.3])
MASK = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
X = (np.arange(18, dtype=np.float32).reshape(1, 2, 3, 3) - 8.0) / 4


def class_1_in_mask(output: torch.Tensor) -> torch.Tensor:
    return (output[:, 1] * MASK).sum(dim=(1, 2))



GRADIENT = np.stack([SEG_W[1, 0] * MASK.numpy(), SEG_W[1, 1] * MASK.numpy()])  # (C, H, W)
SCORE = float((X[0] * GRADIENT).sum() + SEG_B[1] * 3)  # three pixels in the mask


def test_scores_targets_and_options():
    exp = vx.explain(LinearSegNet(SEG_W, SEG_B), X, method="saliency", targets=class_1_in_mask)
    close(exp.scores, [[SCORE]])
    assert exp.targets.tolist() == [0]  # the one score column
    assert exp.options["targets"] == "callable class_1_in_mask"


@pytest.mark.parametrize(
    "method, options, expected",
    [
        ("saliency", {}, np.abs(GRADIENT).max(axis=0)),
        ("input_x_gradient", {}, (X[0] * GRADIENT).sum(axis=0)),
        ("integrated_gradients", {"steps": 4}, (X[0] * GRADIENT).sum(axis=0)),  # linear: IG = x ⊙ gradient
        ("guided_backprop", {}, np.abs(GRADIENT).max(axis=0)),  # no ReLU: the plain gradient
        ("smoothgrad", {"samples": 3}, np.abs(GRADIENT).max(axis=0)),  # constant gradient: noise changes nothing
        # window 1: setting pixel p to 0 drops s by Σ_c W[1, c] x_c(p) M(p)
        ("occlusion", {"window": 1, "stride": 1}, (X[0] * GRADIENT).sum(axis=0)),
    ],
)
def test_hand_values_on_a_linear_segmentation_model(method, options, expected):
    exp = vx.explain(LinearSegNet(SEG_W, SEG_B), X, method=method, targets=class_1_in_mask, **options)
    close(exp.maps, expected[None], atol=1e-5)


def test_integrated_gradients_completeness_with_a_callable():
    exp = vx.explain(LinearSegNet(SEG_W, SEG_B), X, method="integrated_gradients", targets=class_1_in_mask)
    assert exp.options["completeness_gap"] == pytest.approx([0.0], abs=1e-5)  # bias cancels in f(x) − f(0)


class ScoreAsOutput(torch.nn.Module):
    """The model with the callable folded in: output (N, 1), explained for class 0."""

    def __init__(self, model: torch.nn.Module, function) -> None:
        super().__init__()
        self.inner = model
        self.function = function

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.function(self.inner(x))[:, None]


FAST = {**quick_options(), "occlusion": {"window": 4, "stride": 4}, "smoothgrad": {"samples": 3}, "integrated_gradients": {"steps": 5}, "rise": {"masks": 64}}
#: methods that need class indices (the classifier's weight row of a class) refuse a callable
NEEDS_CLASS_INDICES = {m.name for m in vx.methods() if m.class_targets_only}


@pytest.mark.parametrize("method", [m.name for m in vx.methods() if "torch" in m.backends and ATTENTION not in m.requires])  # attention methods: test_vit_rollout.py
def test_every_method_equals_the_model_with_the_score_folded_in(method):
    seg = tiny_seg_net(seed=0)
    x = images(3, size=8, seed=1)
    mask = torch.zeros(8, 8)
    mask[2:6, 1:5] = 1

    def score(output):
        return (output[:, 1] * mask).sum(dim=(1, 2))

    info = {m.name: m for m in vx.methods()}[method]
    options = dict(FAST.get(method, {}))
    if method in NEEDS_CLASS_INDICES:
        with pytest.raises(vx.InvalidTarget, match="class indices"):
            vx.explain(seg, x, method=method, targets=score, **options)
        return
    layer = {"layer": "conv2"} if "layer" in info.options else {}
    exp = vx.explain(seg, x, method=method, targets=score, **options, **layer)
    folded = vx.explain(ScoreAsOutput(seg, score), x, method=method, targets=0, **options, **({"layer": "inner.conv2"} if layer else {}))
    assert exp.scores.shape == (3, 1) and exp.targets.tolist() == [0, 0, 0]
    close(exp.scores, folded.scores, atol=1e-5)
    close(exp.maps, folded.maps, atol=1e-5)
    assert exp.maps.std() > 0


def test_smoothgrad_follows_its_base_on_class_only_targets(monkeypatch):
    """SmoothGrad over Finer-CAM (class indices only) refuses a callable before any base call;
    over Grad-CAM it explains it."""
    from vexplain.plugins.smoothgrad import SmoothGrad

    seg, x = tiny_seg_net(seed=0), images(2, size=8, seed=1)
    calls = []
    monkeypatch.setattr(SmoothGrad, "attribute", lambda *args: calls.append(args))
    with pytest.raises(vx.InvalidTarget, match="method 'smoothgrad' explains class indices only") as caught:
        vx.explain(seg, x, method="smoothgrad", base="finercam", base_options={"layer": "conv2"}, targets=class_in_centre)
    assert not calls and "\n" not in str(caught.value)
    monkeypatch.undo()
    assert SmoothGrad.classes_only_for({"base": "finercam"}) and not SmoothGrad.classes_only_for({}) and not SmoothGrad.classes_only_for({"base": "nope"})
    exp = vx.explain(seg, x, method="smoothgrad", base="gradcam", base_options={"layer": "conv2"}, samples=2, targets=class_in_centre)
    assert exp.maps.shape == (2, 8, 8) and np.isfinite(exp.maps).all()


def test_per_input_scores_stay_with_their_inputs_across_batches():
    seg = tiny_seg_net(seed=0)
    x = images(5, size=8, seed=2)
    whole = vx.explain(seg, x, method="integrated_gradients", targets=class_in_centre, steps=4)
    small = vx.explain(vx.adapt(seg, batch_size=2), x, method="integrated_gradients", targets=class_in_centre, steps=4, batch_size=3)
    close(small.maps, whole.maps, atol=1e-6)
    close(np.concatenate([vx.explain(seg, x[i : i + 1], method="saliency", targets=class_in_centre).maps for i in range(5)]),
          vx.explain(seg, x, method="saliency", targets=class_in_centre).maps)


def class_in_centre(output: torch.Tensor) -> torch.Tensor:
    return output[:, 2, 3:5, 3:5].sum(dim=(1, 2))


def test_regression_style_output():
    model = seeded_cnn(seed=0)
    x = images(2, size=8, seed=3)
    exp = vx.explain(model, x, method="input_x_gradient", targets=lambda out: out[:, 1] - out[:, 3])
    by_class = [vx.explain(model, x, method="input_x_gradient", targets=k).maps for k in (1, 3)]
    close(exp.maps, by_class[0] - by_class[1], atol=1e-6)


@pytest.mark.parametrize(
    "function, message",
    [
        (lambda out: out[:, 1], r"one score per input, shape \(2,\); got shape \(2, 8, 8\)"),
        (lambda out: out[:, 1].sum(dim=(1, 2)).long(), "must return a float tensor"),
        (lambda out: out[:, 1].sum().item(), "got float"),
    ],
)
def test_a_callable_returning_the_wrong_thing(function, message):
    with pytest.raises(vx.InvalidTarget, match=message) as caught:
        vx.explain(tiny_seg_net(), images(2, size=8), method="saliency", targets=function)
    assert "\n" not in str(caught.value)


def test_the_onnx_engine_refuses_callables_while_onnx_models_take_them():
    onnx = onnx_bytes(seeded_cnn(seed=0), (3, 8, 8))
    on_onnx = vx.explain(onnx, images(1, size=8), method="occlusion", targets=lambda out: out[:, 0], window=4)
    on_torch = vx.explain(seeded_cnn(seed=0), images(1, size=8), method="occlusion", targets=lambda out: out[:, 0], window=4)
    close(on_onnx.maps, on_torch.maps, atol=1e-5)  # tests/test_outputs_*.py cover ONNX callables in depth
    with pytest.raises(vx.UnsupportedCapability, match="callable targets run in torch"):
        vx.explain(seeded_cnn(), images(1, size=8), method="occlusion", targets=lambda out: out[:, 0], engine="onnx")
    exp = vx.explain(seeded_cnn(), images(1, size=8), method="occlusion", targets=lambda out: out[:, 0], window=4)
    assert exp.options["engine"] == "incremental"  # exact, computed by torch


def test_readme_example_runs(capsys):
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("### Targets beyond classification", 1)[1]
    block = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(block, "README.md callable targets", "exec"), namespace)
    exp = namespace["exp"]
    assert exp.scores.shape == (2, 1) and exp.targets.tolist() == [0, 0]
    assert exp.maps.shape == (2, 32, 32) and exp.options["targets"] == "callable road_score"
    assert "(2, 1) [0 0]" in capsys.readouterr().out


class DetectionStyle(torch.nn.Module):
    """Returns a dict, as detectors do: per-image box scores (N, B) from a tiny CNN."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = seeded_cnn(seed=0)

    def forward(self, x: torch.Tensor) -> dict:
        return {"box_scores": self.backbone(x), "boxes": torch.zeros(len(x), 5, 4)}


def test_structured_output_box_score():
    x = images(3, size=8, seed=6)
    exp = vx.explain(DetectionStyle(), x, method="saliency", targets=lambda out: out["box_scores"][:, 2])
    by_class = vx.explain(seeded_cnn(seed=0), x, method="saliency", targets=2)
    close(exp.maps, by_class.maps)
    close(exp.scores[:, 0], by_class.scores[:, 2])


def test_a_non_classifier_without_a_callable_says_what_to_do():
    with pytest.raises(vx.ModelLoadError, match=r"returned \(2, 3, 8, 8\).*targets= a callable"):
        vx.explain(tiny_seg_net(), images(2, size=8), method="saliency")
