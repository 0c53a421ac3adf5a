"""Output selection on PyTorch models: tuples, dicts, Hugging Face-style objects, and the CAM head
taken from the Linear that computes the explained output (not the last in module order)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import vexplain as vx
from models import assert_untouched, close, images, snapshot
from outputs_models import DictHeads, LogitsObject, ThreeHeads

X = images(3, size=16, seed=4)


class Only(torch.nn.Module):
    """A model reduced to one of its outputs, the reference every selection is checked against."""

    def __init__(self, model: torch.nn.Module, index: int) -> None:
        super().__init__()
        self.inner = model
        self.index = index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)[self.index]


def test_several_outputs_and_class_targets_is_an_error_listing_them():
    with pytest.raises(vx.InvalidOption) as caught:
        vx.explain(ThreeHeads(), X, method="saliency", targets=0)
    message = str(caught.value)
    assert "returns 3 outputs (0 '0' (3, 4), 1 '1' (3, 3), 2 '2' (3, 10))" in message and "output=" in message
    assert "\n" not in message
    with pytest.raises(vx.InvalidOption, match=r"0 'boxes' \(3, 4\), 1 'scores' \(3, 3\), 2 'landmarks' \(3, 10\)"):
        vx.explain(DictHeads(), X, method="occlusion", window=8)


@pytest.mark.parametrize(
    "model, output, name", [(ThreeHeads(), 1, "1"), (ThreeHeads(), -2, "1"), (DictHeads(), "scores", "scores"), (DictHeads(), 1, "scores")]
)
def test_the_chosen_output_is_explained(model, output, name):
    reference = vx.explain(Only(ThreeHeads(), 1), X, method="saliency")
    exp = vx.explain(vx.adapt(model, output=output), X, method="saliency")
    close(exp.scores, ThreeHeads()(torch.from_numpy(X))[1].detach())
    close(exp.maps, reference.maps)
    assert exp.options["output"] == name


def test_an_object_with_logits_is_used_unasked():
    model = LogitsObject()
    exp = vx.explain(model, X, method="gradcam")
    reference = vx.explain(Only(ThreeHeads(), 1), X, method="gradcam", layer="inner.backbone")
    close(exp.scores, reference.scores)
    close(exp.maps, reference.maps, atol=1e-6)
    assert exp.options["output"] == "logits" and exp.options["layer"] == "backbone"


def test_bad_output_choices():
    with pytest.raises(vx.InvalidOption, match=r"out of range: .* returns 3 outputs"):
        vx.explain(vx.adapt(ThreeHeads(), output=3), X, method="saliency")
    with pytest.raises(vx.InvalidOption, match="returns no output 'score'; its outputs: 0 'boxes'"):
        vx.explain(vx.adapt(DictHeads(), output="score"), X, method="saliency")
    with pytest.raises(vx.InvalidOption, match="'hidden_states' .* is a tuple, not a tensor"):
        vx.explain(vx.adapt(LogitsObject(), output="hidden_states"), X, method="saliency")


def test_callables_receive_the_whole_output_or_the_chosen_one():
    whole = vx.explain(ThreeHeads(), X, method="saliency", targets=lambda out: out[1][:, 2])
    chosen = vx.explain(vx.adapt(DictHeads(), output="scores"), X, method="saliency", targets=lambda scores: scores[:, 2])
    by_class = vx.explain(Only(ThreeHeads(), 1), X, method="saliency", targets=2)
    close(whole.maps, by_class.maps)
    close(chosen.maps, by_class.maps)
    assert chosen.options["output"] == "scores" and chosen.options["targets"].startswith("callable")


def test_gradient_free_methods_on_a_chosen_output_equal_the_reduced_model():
    reference, adapter = Only(ThreeHeads(), 1), vx.adapt(ThreeHeads(), output=1)
    for method, options in {"occlusion": {"window": 8, "stride": 4}, "rise": {"masks": 64}, "scorecam": {}, "ablationcam": {}}.items():
        layer = {"layer": "inner.backbone"} if method in ("scorecam", "ablationcam") else {}
        exp = vx.explain(adapter, X, method=method, targets=[0, 1, 2], **options)
        expected = vx.explain(reference, X, method=method, targets=[0, 1, 2], **options, **layer)
        close(exp.maps, expected.maps, atol=1e-5)


def test_cam_uses_the_linear_that_computes_the_explained_output():
    model = ThreeHeads()
    x = torch.from_numpy(X)
    before = snapshot(model)
    adapter = vx.adapt(model, output="1")
    weights = adapter.classifier_weights(x[:1])
    assert torch.equal(weights, model.scores.weight.detach())  # landmarks is the last Linear in module order
    exp = vx.explain(adapter, X, method="cam", targets=[0, 1, 2])
    features = model.backbone(x).detach()
    expected = torch.einsum("nc,nchw->nhw", model.scores.weight.detach()[[0, 1, 2]], features)
    close(exp.layer_maps, expected.numpy(), atol=1e-5)
    assert_untouched(model, before)
    landmarks = vx.adapt(model, output=2).classifier_weights(x[:1])
    assert torch.equal(landmarks, model.landmarks.weight.detach())


def test_cam_on_an_output_no_linear_computes_names_classifier_weights():
    class Doubled(ThreeHeads):
        def forward(self, x):
            boxes, scores, landmarks = super().forward(x)
            return boxes, scores * 2.0

    with pytest.raises(vx.UnsupportedCapability, match="'classifier_weights' \\(the explained output is not computed by an nn.Linear"):
        vx.explain(vx.adapt(Doubled(), output=1), X, method="cam")


def test_layer_shapes_list_only_feature_maps():
    shapes = vx.adapt(ThreeHeads()).layer_shapes(torch.from_numpy(X[:1]))
    assert shapes == {
        "backbone": (1, 16, 8, 8), "backbone.0": (1, 8, 16, 16), "backbone.1": (1, 8, 16, 16),
        "backbone.2": (1, 16, 8, 8), "backbone.3": (1, 16, 8, 8),
    }
    assert np.all([len(s) == 4 for s in shapes.values()])
