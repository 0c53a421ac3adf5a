"""Attention methods on the other Hugging Face families of the ViT layout: DINOv2 (with and
without register tokens) and CLIP's vision tower equal a hand computation from their own eager
``output_attentions=True`` attentions; a module whose output the recomputation does not reproduce,
and cross-attention, are typed errors naming the module, with no hook left."""
from __future__ import annotations

import pytest
import torch

import vexplain as vx
from vexplain.core.errors import UnsupportedCapability

from test_vit_attention_gradients import hand
from test_vit_rollout import close, hand_rollout, hooks
from vit_models import hf_attentions_and_gradients, hf_clip, hf_dinov2, hf_vit, inputs

FAMILIES = {
    "dinov2": (lambda eager=False: hf_dinov2(seed=1, eager=eager), 1),
    "dinov2_registers": (lambda eager=False: hf_dinov2(seed=2, registers=4, eager=eager), 5),
    "clip": (lambda eager=False: hf_clip(seed=3, eager=eager), 1),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_rollout_equals_hand_computation_from_eager_attentions(family):
    build, prefix = FAMILIES[family]
    fused, eager, x = build(), build(eager=True), inputs(3, seed=2)
    with torch.no_grad():
        attentions = list(eager(x, output_attentions=True).attentions)
    expected = hand_rollout(attentions, "mean", 0.25, prefix=prefix)
    for model in (fused, eager):
        exp = vx.explain(model, x, method="attention_rollout", discard_ratio=0.25)
        assert (exp.options["grid"], exp.options["prefix"]) == ([4, 4], prefix)
        assert close(exp.layer_maps, expected)


@pytest.mark.parametrize("method", ["attention_gradcam", "legrad"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_gradient_methods_equal_hand_computation(family, method):
    build, prefix = FAMILIES[family]
    fused, eager, x = build(), build(eager=True), inputs(3, seed=4)
    targets = torch.tensor([0, 3, 4])
    attentions, gradients = hf_attentions_and_gradients(eager, x, targets)
    eager.zero_grad(set_to_none=True)
    expected = hand(method, attentions, gradients, prefix=prefix)
    exp = vx.explain(fused, x, method=method, targets=targets.tolist())
    scale = max(1.0, float(expected.abs().max()))
    assert torch.allclose(torch.as_tensor(exp.layer_maps).double(), expected.double(), atol=1e-5 * scale, rtol=0)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_cam_default_layer_reads_the_grid(family):
    build, prefix = FAMILIES[family]
    exp = vx.explain(build(), inputs(2), method="gradcam")
    assert (exp.options["grid"], exp.options["prefix"]) == ([4, 4], prefix)
    assert exp.layer_maps.shape == (2, 4, 4)


def test_a_module_whose_output_is_not_reproduced_is_refused_by_name():
    """Stands in for attention with terms the recomputation lacks (rotary embeddings, an inner bias)."""
    model = hf_vit(seed=4)
    attention = model.get_submodule("vit.layers.1.attention")
    original = attention.forward

    def shifted(*args, **kwargs):
        out, weights = original(*args, **kwargs)
        return out + 0.5, weights

    attention.forward = shifted
    for method in ("attention_rollout", "attention_gradcam"):
        with pytest.raises(UnsupportedCapability, match="ViTAttention's output is not softmax") as caught:
            vx.explain(model, inputs(1), method=method)
        assert "\n" not in str(caught.value)
    assert hooks(model) == 0


class ProbePooling(torch.nn.Module):
    """Patch tokens pooled by a learned query through nn.MultiheadAttention (cross-attention)."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Conv2d(3, 8, 8, 8)
        self.probe = torch.nn.Parameter(torch.randn(1, 1, 8))
        self.attn = torch.nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = torch.nn.Linear(8, 3)

    def forward(self, x):
        tokens = self.embed(x).flatten(2).transpose(1, 2)
        pooled = self.attn(self.probe.expand(x.shape[0], -1, -1), tokens, tokens)[0]
        return self.head(pooled[:, 0])


def test_cross_attention_is_refused_by_name():
    model = ProbePooling().eval()
    with pytest.raises(UnsupportedCapability, match=r"MultiheadAttention 'attn' is cross-attention \(1 queries, 16 keys\)"):
        vx.explain(model, inputs(1), method="attention_rollout")
    assert hooks(model) == 0


def test_output_check_tolerance_follows_the_output_dtype():
    """A difference of 1e-3 of the output's magnitude: rounding for a float16 output (16 epsilons
    are 1.6e-2), a real difference for a float32 one (tolerance 1e-4)."""
    from vexplain.adapters.torch_attention import _check_reproduced

    module = hf_vit(seed=1).get_submodule("vit.layers.0.attention")
    mixed = torch.full((1, 3, 4), 2.0)
    _check_reproduced(module, (mixed.half() + 2e-3,), mixed, ValueError)
    with pytest.raises(ValueError, match="output is not softmax"):
        _check_reproduced(module, (mixed + 2e-3,), mixed, ValueError)


def test_half_precision_models_run_the_attention_methods():
    """A bfloat16 model passes the output check, and its map stays close to the float32 model's."""
    model, x = hf_vit(seed=1), inputs(2)
    full = vx.explain(model, x, method="attention_rollout").layer_maps
    half = vx.explain(hf_vit(seed=1).to(torch.bfloat16), x.to(torch.bfloat16), method="attention_rollout").layer_maps
    assert torch.allclose(torch.as_tensor(half).float(), torch.as_tensor(full), atol=2e-2, rtol=0)
