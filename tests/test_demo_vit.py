"""``demo/train_vit.py``: both architectures train, save and load (same logits), the hybrid's stem
starts from the shipped CNN's weights, and vexplain reads its 8x8 token grid with no layer= or grid=."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import vexplain as vx
from vexplain.demo.model import load_demo_model
from vexplain.demo.train_vit import HYBRID_STEM_BLOCKS, HybridViT, load, train


@pytest.mark.parametrize("arch", ["patch", "hybrid"])
def test_train_writes_weights_that_load_to_the_same_model(tmp_path, arch):
    model, metadata = train(tmp_path, epochs=1, seed=0, count=128, heldout=32, arch=arch)
    assert metadata["arch"] == arch and json.loads((tmp_path / "demo_vit.json").read_text())["arch"] == arch
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(x), load(tmp_path / "demo_vit.pt", arch)(x))


def test_hybrid_stem_starts_from_the_shipped_cnn():
    cnn, hybrid = load_demo_model(), HybridViT()
    convs = [m for m in hybrid.embed if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == HYBRID_STEM_BLOCKS + 1 and convs[-1].stride == convs[-1].kernel_size == (2, 2)
    assert torch.equal(convs[0].weight, cnn.features[0].weight)
    assert torch.equal(hybrid.embed[1].running_mean, cnn.features[1].running_mean)


def test_hybrid_is_explained_on_its_token_grid_without_options():
    """Effective stride 8 (the CNN's 4 times the embedding's 2): 65 tokens are a class token and an 8x8 grid."""
    model = HybridViT(pretrained_stem=False).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    exp = vx.explain(model, x, method="gradcam")
    assert exp.options["layer"] == "blocks.2.norm1"
    assert (exp.options["grid"], exp.options["prefix"]) == ([8, 8], 1)
    assert exp.layer_maps.shape == (2, 8, 8) and np.isfinite(exp.maps).all()
    rollout = vx.explain(model, x, method="attention_rollout")
    assert rollout.layer_maps.shape == (2, 8, 8)
