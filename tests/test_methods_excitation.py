"""Excitation backprop and its contrastive variant: hand-computed winning probabilities, agreement
with TorchRay, batch invariance, the default layer, model safety."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn as nn

import vexplain as vx
from lrp_reference import torchray
from models import assert_untouched, hook_counts, images, snapshot

X = np.array([[[[1.0, 2.0]]]], np.float32)  # one channel, 1 × 2 pixels


def two_layer_net() -> nn.Module:
    """conv 1×1: channel 0 = x, channel 1 = 3 − x → a = [[1, 2], [2, 1]]; then a linear layer on
    the flattened (ch0p0, ch0p1, ch1p0, ch1p1) = (1, 2, 2, 1)."""
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([1.0, -1.0]).reshape(2, 1, 1, 1))
        model[0].bias.copy_(torch.tensor([0.0, 3.0]))
        model[3].weight.copy_(torch.tensor([[1.0, -1.0, -2.0, 2.0], [0.0, 1.0, 1.0, 1.0]]))
        model[3].bias.copy_(torch.tensor([0.5, 0.0]))
    return model.eval()


def test_hand_computed_winning_probabilities():
    # class 0: w⁺ = (1, 0, 0, 2), a ⊙ w⁺ = (1, 0, 0, 2), total 3 → P = (1/3, 0, 0, 2/3);
    # summed over channels: pixel 0 gets 1/3, pixel 1 gets 2/3 (the bias 0.5 is ignored)
    exp = vx.explain(two_layer_net(), X, method="excitation_backprop", layer="1", targets=0)
    np.testing.assert_allclose(exp.layer_maps, [[[1 / 3, 2 / 3]]], rtol=1e-6)
    np.testing.assert_allclose(exp.maps, [[[1 / 3, 2 / 3]]], rtol=1e-6)  # same size: the upsampling is the identity
    assert exp.options["layer"] == "1"


def test_hand_computed_contrastive():
    # negated weights (−1, 1, 2, −2): w⁺ = (0, 1, 2, 0), a ⊙ w⁺ = (0, 2, 4, 0) → P⁻ = (0, 1/3, 2/3, 0):
    # pixel 0: 1/3 − 2/3 < 0 → 0; pixel 1: 2/3 − 1/3 = 1/3
    exp = vx.explain(two_layer_net(), X, method="c_eb", layer="1", targets=0)
    np.testing.assert_allclose(exp.layer_maps, [[[0.0, 1 / 3]]], rtol=1e-6, atol=1e-7)


def test_probability_passes_through_a_convolution():
    """At the conv's input side: the linear layer's P, then the conv's x ⊙ w⁺ split per pixel.
    Channel 1 (3 − x) has w = −1 on x, so w⁺ = 0 and its probability comes only from the bias,
    which excitation backprop ignores: P(x) at each pixel is channel 0's P there."""
    model = nn.Sequential(nn.Identity(), two_layer_net())
    exp = vx.explain(model, X, method="eb", layer="0", targets=0)
    np.testing.assert_allclose(exp.layer_maps, [[[1 / 3, 0.0]]], rtol=1e-6, atol=1e-7)


def bn_cnn() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(24, 3),
    )
    bn = model[1]
    bn.running_mean.uniform_(-0.5, 0.5)
    bn.running_var.uniform_(0.5, 2.0)
    bn.weight.data.uniform_(0.5, 1.5)
    bn.bias.data.uniform_(-0.3, 0.3)
    return model.eval()


@pytest.mark.parametrize("layer", ["2", "3", "5"])
def test_torchray_agreement(layer):
    reference = torchray()
    model = bn_cnn()
    x = images(3, size=8, seed=1)
    before = snapshot(model)
    eb = vx.explain(model, x, method="eb", layer=layer, targets=[0, 1, 2])
    ceb = vx.explain(model, x, method="c_eb", layer=layer, targets=[0, 1, 2])
    assert_untouched(model, before)
    inputs = torch.from_numpy(x)
    expected = np.stack([reference.excitation_backprop(copy.deepcopy(model), inputs[i : i + 1], i, saliency_layer=layer)[0, 0].numpy() for i in range(3)])
    contrast = [
        reference.contrastive_excitation_backprop(copy.deepcopy(model), inputs[i : i + 1], i, saliency_layer=layer, contrast_layer="5", classifier_layer="8")[0, 0].numpy()
        for i in range(3)
    ]
    assert np.abs(expected).max() > 1e-2
    np.testing.assert_allclose(eb.layer_maps, expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ceb.layer_maps, np.stack(contrast), rtol=0, atol=1e-6)


def resnet18():
    models = torchray("torchvision.models")
    torch.manual_seed(0)
    return models.resnet18(num_classes=10).eval()


def test_torchray_on_resnet18_with_its_skip_patch():
    """TorchRay needs ``update_resnet`` (its EltwiseSum) for the residual sums; vexplain splits
    every sum in proportion anyway. The default layer is ``layer2``."""
    reference = torchray()
    model = resnet18()
    x = images(2, size=64, seed=3)
    exp = vx.explain(model, x, method="eb", targets=[1, 4])
    assert exp.options["layer"] == "layer2" and exp.layer_maps.shape == (2, 8, 8)
    patched = reference.update_resnet(copy.deepcopy(model))
    inputs = torch.from_numpy(x)
    expected = np.stack([reference.excitation_backprop(patched, inputs[i : i + 1], t, saliency_layer="layer2")[0, 0].numpy() for i, t in enumerate([1, 4])])
    np.testing.assert_allclose(exp.layer_maps, expected, rtol=0, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("method", ["excitation_backprop", "contrastive_excitation_backprop"])
def test_batch_sizes_give_identical_results(method):
    model = bn_cnn()
    x = images(16, size=8, seed=2)
    runs = [vx.explain(model, x, method=method, layer="3", batch_size=b).maps for b in (1, 2, 4, 16)]
    for other in runs[1:]:
        np.testing.assert_allclose(other, runs[0], rtol=0, atol=1e-7)


def test_probabilities_sum_to_one_at_a_layer():
    """Without bias terms in the way, excitation backprop conserves the target's probability."""
    exp = vx.explain(bn_cnn(), images(3, size=8, seed=5), method="eb", layer="5")
    np.testing.assert_allclose(exp.layer_maps.reshape(3, -1).sum(1), 1.0, rtol=1e-5)


def test_unknown_layer_and_flat_layer_are_typed_errors():
    model = bn_cnn().train()
    before = snapshot(model)
    with pytest.raises(vx.UnknownLayer):
        vx.explain(model, images(1, size=8), method="eb", layer="features.9")
    with pytest.raises(vx.InvalidOption, match="feature map"):
        vx.explain(model, images(1, size=8), method="c_eb", layer="7")  # the flattened (N, 24) vector
    assert_untouched(model, before)
    assert hook_counts(model) == {} and model.training
