"""Occlusion's ``window="patch"``: one ViT patch at a time (window = stride = the input over the
first token grid), equal to a hand computation and to the explicit window; typed errors without a patch grid."""
from __future__ import annotations

import pytest
import torch

import vexplain as vx
from vexplain.core.errors import InvalidOption

from vit_models import hf_vit, hybrid_vit, inputs, plain_vit


def hand_patch_occlusion(model, x, target, patch=8):
    """For each patch: y_t(x) - y_t(x with that patch set to 0), written over the patch's pixels."""
    with torch.no_grad():
        logits = lambda batch: model(batch).logits if hasattr(model(batch), "logits") else model(batch)  # noqa: E731
        base = logits(x)[0, target]
        out = torch.zeros(x.shape[2:])
        for top in range(0, x.shape[2], patch):
            for left in range(0, x.shape[3], patch):
                occluded = x.clone()
                occluded[:, :, top : top + patch, left : left + patch] = 0.0
                out[top : top + patch, left : left + patch] = base - logits(occluded)[0, target]
    return out


@pytest.mark.parametrize("factory", [hf_vit, plain_vit, hybrid_vit, lambda: plain_vit(conv_patches=False)])
def test_patch_window_equals_hand_computation(factory):
    """A hybrid's patch is its effective stride (a stride-2 embedding on a stride-4 stem: 8), a
    Linear embedding's the input over its token grid."""
    model, x = factory(), inputs(1, seed=3)
    exp = vx.explain(model, x, method="occlusion", window="patch", targets=2)
    assert exp.options["window"] == (8, 8) and exp.options["stride"] == (8, 8) and exp.options["window_from"] == "patch"
    assert exp.options["windows"] == 16
    assert torch.allclose(torch.as_tensor(exp.maps[0]), hand_patch_occlusion(model, x, 2), atol=1e-5)


def test_patch_window_is_the_explicit_window_and_keeps_a_given_stride():
    model, x = hf_vit(), inputs(2)
    patch = vx.explain(model, x, method="occlusion", window="patch", engine="torch")
    explicit = vx.explain(model, x, method="occlusion", window=8, stride=8, engine="torch")
    assert torch.equal(torch.as_tensor(patch.maps), torch.as_tensor(explicit.maps))
    finer = vx.explain(model, x, method="occlusion", window="patch", stride=4, engine="torch")
    assert finer.options["stride"] == (4, 4) and finer.options["windows"] == 49


def test_patch_window_refused_without_a_patch_embedding():
    cnn = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))
    with pytest.raises(InvalidOption, match="window='patch'.*patch embedding") as caught:
        vx.explain(cnn, inputs(1), method="occlusion", window="patch")
    assert "\n" not in str(caught.value)
    with pytest.raises(InvalidOption, match="'patch'"):
        vx.explain(cnn, inputs(1), method="occlusion", window="patches")
