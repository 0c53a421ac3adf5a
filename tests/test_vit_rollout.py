"""Attention rollout: equal to a hand computation from Hugging Face's ``output_attentions=True``
attentions and from ``nn.MultiheadAttention``'s own weights; fused (SDPA) and eager attention
agree; head fusion and discard ratio; batch invariance; the model left as it was; typed errors."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import vexplain as vx
from vexplain.core.errors import InvalidOption, UnsupportedCapability

from vit_models import hf_deit, hf_swin, hf_vit, inputs, plain_vit


def hand_rollout(attentions, head_fusion="mean", discard_ratio=0.0, prefix=1, grid=(4, 4)):
    """The definition, written out row by row: (N, h, w) layer maps from (N, heads, T, T) per layer."""
    result = None
    for attention in attentions:
        a = attention.double()
        fused = {"mean": a.mean(1), "max": a.max(1).values, "min": a.min(1).values}[head_fusion].clone()
        n, t, _ = fused.shape
        drop = int(discard_ratio * (t - 1))
        for i in range(n):
            for row in range(t):
                order = sorted(range(1, t), key=lambda j: float(fused[i, row, j]))
                for j in order[:drop]:
                    fused[i, row, j] = 0.0
        fused = fused + torch.eye(t, dtype=torch.float64)
        fused = fused / fused.sum(-1, keepdim=True)
        result = fused if result is None else torch.einsum("nij,njk->nik", fused, result)
    return result[:, 0, prefix:].reshape(-1, *grid)


def eager_attentions(model, x):
    with torch.no_grad():
        return list(model(x, output_attentions=True).attentions)


def close(a, b, tol=1e-5):
    return torch.allclose(torch.as_tensor(a).double(), torch.as_tensor(b).double(), atol=tol, rtol=0)


@pytest.mark.parametrize("head_fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("discard_ratio", [0.0, 0.5])
def test_equals_hand_computation_from_eager_attentions(head_fusion, discard_ratio):
    model, x = hf_vit(eager=True), inputs(3)
    expected = hand_rollout(eager_attentions(model, x), head_fusion, discard_ratio)
    exp = vx.explain(model, x, method="attention_rollout", head_fusion=head_fusion, discard_ratio=discard_ratio)
    assert exp.layer_maps.shape == (3, 4, 4) and close(exp.layer_maps, expected)
    upsampled = F.interpolate(expected.unsqueeze(1), size=(32, 32), mode="bilinear", align_corners=False).squeeze(1)
    assert exp.maps.shape == (3, 32, 32) and close(exp.maps, upsampled)
    assert exp.options["head_fusion"] == head_fusion and exp.options["discard_ratio"] == discard_ratio
    assert exp.options["grid"] == [4, 4] and exp.options["prefix"] == 1 and len(exp.options["layers"]) == 2


def test_options_change_the_map():
    model, x = hf_vit(eager=True), inputs(2)
    maps = {(f, r): vx.explain(model, x, method="attention_rollout", head_fusion=f, discard_ratio=r).layer_maps for f in ("mean", "max", "min") for r in (0.0, 0.9)}
    keys = list(maps)
    for i, first in enumerate(keys):
        for second in keys[i + 1 :]:
            assert not close(maps[first], maps[second], 1e-4), (first, second)


def test_fused_sdpa_and_eager_agree():
    fused, eager = hf_vit(seed=3), hf_vit(seed=3, eager=True)
    assert fused.config._attn_implementation != "eager"
    x = inputs(4, seed=5)
    for options in ({}, {"head_fusion": "max", "discard_ratio": 0.3}):
        a = vx.explain(fused, x, method="attention_rollout", **options)
        b = vx.explain(eager, x, method="attention_rollout", **options)
        assert close(a.maps, b.maps) and close(a.layer_maps, b.layer_maps)


def test_class_agnostic_targets_recorded():
    model, x = hf_vit(), inputs(2)
    a = vx.explain(model, x, method="attention_rollout", targets=0)
    b = vx.explain(model, x, method="attention_rollout", targets=[3, 4])
    assert a.targets.tolist() == [0, 0] and b.targets.tolist() == [3, 4]
    assert torch.equal(torch.as_tensor(a.maps), torch.as_tensor(b.maps))


def test_deit_skips_the_distillation_token():
    model, x = hf_deit(), inputs(2)
    exp = vx.explain(model, x, method="attention_rollout")
    assert exp.options["prefix"] == 2
    fused, model.config._attn_implementation = model.config._attn_implementation, "eager"
    try:
        expected = hand_rollout(eager_attentions(model, x), prefix=2)
    finally:
        model.config._attn_implementation = fused
    assert close(exp.layer_maps, expected)


@pytest.mark.parametrize("batch_size", [1, 2, 4, 16])
def test_batch_size_changes_nothing(batch_size):
    model, x = hf_vit(), inputs(16, seed=7)
    whole = vx.explain(vx.adapt(model, batch_size=16), x, method="attention_rollout", discard_ratio=0.2)
    parts = vx.explain(vx.adapt(model, batch_size=batch_size), x, method="attention_rollout", discard_ratio=0.2)
    assert close(parts.maps, whole.maps, 1e-6) and close(parts.layer_maps, whole.layer_maps, 1e-6)
    single = vx.explain(model, x[5:6], method="attention_rollout", discard_ratio=0.2)
    assert close(single.layer_maps[0], whole.layer_maps[5], 1e-6)


def mha_attentions(model, x):
    """Each block's per-head probabilities from nn.MultiheadAttention itself (need_weights=True)."""
    with torch.no_grad():
        tokens = model.embed(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([model.cls.expand(len(x), -1, -1), tokens], dim=1) + model.pos
        found = []
        for block in model.blocks:
            y = block.norm1(tokens)
            out, weights = block.attn(y, y, y, need_weights=True, average_attn_weights=False)
            found.append(weights)
            tokens = tokens + out
            tokens = tokens + block.mlp(block.norm2(tokens))
    return found


@pytest.mark.parametrize("head_fusion", ["mean", "min"])
def test_plain_torch_multihead_attention(head_fusion):
    model, x = plain_vit(), inputs(3)
    exp = vx.explain(model, x, method="attention_rollout", head_fusion=head_fusion, discard_ratio=0.25)
    assert close(exp.layer_maps, hand_rollout(mha_attentions(model, x), head_fusion, 0.25))
    assert exp.options["layers"] == ["blocks.0.attn", "blocks.1.attn"]


def hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


def test_model_left_exactly_as_it_was():
    model, x = hf_vit(), inputs(2)
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [m.training for m in model.modules()]
    before, given = hooks(model), x.clone()
    vx.explain(model, x, method="attention_rollout")
    assert torch.equal(x, given)
    assert hooks(model) == before and [m.training for m in model.modules()] == flags
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert model.config._attn_implementation == "sdpa"


class MaskedBlock(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Conv2d(3, 8, 8, 8)
        self.attn = torch.nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = torch.nn.Linear(8, 3)

    def forward(self, x):
        t = self.embed(x).flatten(2).transpose(1, 2)
        mask = torch.zeros(t.shape[1], t.shape[1], dtype=torch.bool)
        return self.head(self.attn(t, t, t, attn_mask=mask)[0].mean(1))


def test_typed_errors_and_no_hook_left():
    cnn = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))
    assert not vx.adapt(cnn).supports("attention") and vx.adapt(plain_vit()).supports("attention")
    with pytest.raises(UnsupportedCapability, match="'attention'") as caught:
        vx.explain(cnn, inputs(1), method="attention_rollout")
    assert "\n" not in str(caught.value) and "attention_rollout" not in str(caught.value).split("work on this model:")[1]
    with pytest.raises(UnsupportedCapability, match="SwinAttention"):
        vx.explain(hf_swin(), inputs(1), method="attention_rollout")
    masked = MaskedBlock().eval()
    with pytest.raises(UnsupportedCapability, match="attn_mask"):
        vx.explain(masked, inputs(1), method="attention_rollout")
    assert hooks(masked) == 0
    with pytest.raises(InvalidOption, match="head_fusion"):
        vx.explain(hf_vit(), inputs(1), method="attention_rollout", head_fusion="median")
    with pytest.raises(InvalidOption, match="discard_ratio"):
        vx.explain(hf_vit(), inputs(1), method="attention_rollout", discard_ratio=1.5)


def test_torchscript_lacks_attention():
    scripted = torch.jit.trace(plain_vit(), inputs(1), check_trace=False)
    with pytest.raises(UnsupportedCapability, match="attention"):
        vx.explain(scripted, inputs(1), method="attention_rollout")


def test_timm_vit_fused_and_eager_equal_its_eager_attentions():
    from vit_models import timm_attentions_and_gradients, timm_vit

    eager, fused, x = timm_vit(fused=False), timm_vit(fused=True), inputs(3)
    attentions, _ = timm_attentions_and_gradients(eager, x, torch.zeros(3, dtype=torch.long))
    expected = hand_rollout(attentions, "max", 0.25)
    for model in (fused, eager):
        exp = vx.explain(model, x, method="attention_rollout", head_fusion="max", discard_ratio=0.25)
        assert close(exp.layer_maps, expected) and exp.options["layers"] == ["blocks.0.attn", "blocks.1.attn"]
