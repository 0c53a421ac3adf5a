"""attention_gradcam (Chefer et al.) and legrad (Bousselham et al.): equal to hand computations from
eager attentions and their autograd gradients (Hugging Face ``output_attentions=True``, timm's eager
path, ``nn.MultiheadAttention``); fused (SDPA) and eager agree; class-specific; batch invariance;
the model left exactly as it was; typed errors."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import vexplain as vx
from vexplain.core.errors import InvalidTarget, UnsupportedCapability

from vit_models import hf_attentions_and_gradients, hf_deit, hf_swin, hf_vit, inputs, plain_vit, timm_attentions_and_gradients, timm_vit

METHODS = ["attention_gradcam", "legrad"]


def hand_gradcam(attentions, gradients, prefix=1, grid=(4, 4)):
    """R = I; per layer R += mean_h(relu(grad * A)) @ R, with explicit loops over heads."""
    n, heads, t, _ = attentions[0].shape
    r = torch.eye(t, dtype=torch.float64).repeat(n, 1, 1)
    for a, g in zip(attentions, gradients):
        fused = sum(torch.clamp(g[:, h].double() * a[:, h].double(), min=0) for h in range(heads)) / heads
        r = r + torch.einsum("nij,njk->nik", fused, r)
    return r[:, 0, prefix:].reshape(n, *grid)


def hand_legrad(gradients, prefix=1, grid=(4, 4)):
    """mean over layers of relu(grad) averaged over heads and query rows."""
    n, heads, t, _ = gradients[0].shape
    total = torch.zeros(n, t, dtype=torch.float64)
    for g in gradients:
        total += torch.clamp(g.double(), min=0).sum(dim=(1, 2)) / (heads * t)
    return (total / len(gradients))[:, prefix:].reshape(n, *grid)


def hand(method, attentions, gradients, prefix=1):
    return hand_gradcam(attentions, gradients, prefix) if method == "attention_gradcam" else hand_legrad(gradients, prefix)


def close(a, b, tol=1e-5):
    return torch.allclose(torch.as_tensor(a).double(), torch.as_tensor(b).double(), atol=tol, rtol=0)


def relative_close(a, b, tol=1e-5):
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    return float((a - b).abs().max()) <= tol * max(float(b.abs().max()), 1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_equals_hand_computation_from_eager_hf_attentions(method):
    model, x = hf_vit(eager=True), inputs(3)
    targets = torch.tensor([0, 3, 4])
    expected = hand(method, *hf_attentions_and_gradients(model, x, targets))
    exp = vx.explain(model, x, method=method, targets=targets.tolist())
    assert exp.layer_maps.shape == (3, 4, 4) and relative_close(exp.layer_maps, expected)
    upsampled = F.interpolate(expected.unsqueeze(1), size=(32, 32), mode="bilinear", align_corners=False).squeeze(1)
    assert exp.maps.shape == (3, 32, 32) and relative_close(exp.maps, upsampled)
    assert exp.targets.tolist() == [0, 3, 4] and exp.options["grid"] == [4, 4] and exp.options["prefix"] == 1
    assert len(exp.options["layers"]) == 2 and float(torch.as_tensor(exp.layer_maps).abs().max()) > 0


@pytest.mark.parametrize("method", METHODS)
def test_hand_computation_on_a_fixed_weight_block(method):
    """One nn.MultiheadAttention block with every weight fixed: probabilities and gradients written
    out from its own need_weights=True weights and autograd on an explicit eager recomputation."""
    model, x = plain_vit(seed=4), inputs(2, seed=9)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.linspace(-0.5, 0.5, p.numel()).reshape(p.shape).sin())
    tokens = model.embed(x).flatten(2).transpose(1, 2)
    tokens = torch.cat([model.cls.expand(len(x), -1, -1), tokens], dim=1) + model.pos
    attentions = []
    for block in model.blocks:
        attn, y = block.attn, block.norm1(tokens)
        d, heads = attn.embed_dim, attn.num_heads
        q, k, v = F.linear(y, attn.in_proj_weight, attn.in_proj_bias).split(d, dim=-1)
        split = lambda z: z.reshape(len(x), -1, heads, d // heads).transpose(1, 2)  # noqa: E731
        a = torch.softmax(split(q) @ split(k).transpose(-1, -2) / (d // heads) ** 0.5, dim=-1)
        attentions.append(a)
        mixed = (a @ split(v)).transpose(1, 2).reshape(len(x), -1, d)
        tokens = tokens + attn.out_proj(mixed)
        tokens = tokens + block.mlp(block.norm2(tokens))
    logits = model.head(model.norm(tokens)[:, 0])
    assert close(logits, model(x), 1e-5)
    targets = torch.tensor([1, 2])
    grads = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), attentions)
    exp = vx.explain(model, x, method=method, targets=[1, 2])
    expected = hand(method, [a.detach() for a in attentions], grads)
    # float32 throughout, fused MHA vs the explicit recomputation: about 2e-5 of the largest value
    assert relative_close(exp.layer_maps, expected, 1e-4)


@pytest.mark.parametrize("method", METHODS)
def test_fused_sdpa_and_eager_agree(method):
    fused, eager = hf_vit(seed=3), hf_vit(seed=3, eager=True)
    assert fused.config._attn_implementation != "eager"
    x = inputs(4, seed=5)
    a, b = vx.explain(fused, x, method=method), vx.explain(eager, x, method=method)
    assert relative_close(a.layer_maps, b.layer_maps) and relative_close(a.maps, b.maps)


@pytest.mark.parametrize("method", METHODS)
def test_timm_vit_equals_its_eager_path(method):
    eager, fused, x = timm_vit(fused=False), timm_vit(fused=True), inputs(3)
    targets = torch.tensor([2, 0, 1])
    expected = hand(method, *timm_attentions_and_gradients(eager, x, targets))
    for model in (fused, eager):
        exp = vx.explain(model, x, method=method, targets=targets.tolist())
        assert exp.options["grid"] == [4, 4] and exp.options["prefix"] == 1
        assert relative_close(exp.layer_maps, expected)
    assert all(b.attn.fused_attn for b in fused.blocks)


@pytest.mark.parametrize("method", METHODS)
def test_target_specific(method):
    model, x = hf_vit(seed=1), inputs(2)
    first, second = vx.explain(model, x, method=method, targets=0), vx.explain(model, x, method=method, targets=3)
    assert not close(first.layer_maps, second.layer_maps, 1e-7)


def test_deit_skips_the_distillation_token():
    model, x = hf_deit(), inputs(2)
    exp = vx.explain(model, x, method="attention_gradcam", targets=1)
    assert exp.options["prefix"] == 2
    fused, model.config._attn_implementation = model.config._attn_implementation, "eager"
    try:
        output = model(x, output_attentions=True)
        grads = torch.autograd.grad(output.logits[:, 1].sum(), output.attentions)
        expected = hand_gradcam([a.detach() for a in output.attentions], grads, prefix=2)
    finally:
        model.config._attn_implementation = fused
    assert relative_close(exp.layer_maps, expected)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("batch_size", [1, 2, 4, 16])
def test_batch_size_changes_nothing(method, batch_size):
    model, x = hf_vit(), inputs(16, seed=7)
    whole = vx.explain(vx.adapt(model, batch_size=16), x, method=method)
    parts = vx.explain(vx.adapt(model, batch_size=batch_size), x, method=method)
    assert relative_close(parts.layer_maps, whole.layer_maps, 1e-6) and parts.targets.tolist() == whole.targets.tolist()
    single = vx.explain(model, x[5:6], method=method, targets=int(whole.targets[5]))
    assert relative_close(single.layer_maps[0], whole.layer_maps[5], 1e-6)


def hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


@pytest.mark.parametrize("method", METHODS)
def test_model_left_exactly_as_it_was(method):
    model, x = hf_vit(), inputs(2)
    model.train()
    model.vit.embeddings.requires_grad_(False)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [m.training for m in model.modules()]
    grad_flags = [p.requires_grad for p in model.parameters()]
    before, given = hooks(model), x.clone()
    vx.explain(model, x, method=method)
    assert torch.equal(x, given) and hooks(model) == before
    assert [m.training for m in model.modules()] == flags and [p.requires_grad for p in model.parameters()] == grad_flags
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert model.config._attn_implementation == "sdpa"
    with torch.no_grad():
        expected = vx.adapt(model).forward(x)
    assert close(vx.explain(model, x, method=method).scores, expected, 1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_typed_errors_and_no_hook_left(method):
    cnn = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))
    with pytest.raises(UnsupportedCapability, match="'attention'") as caught:
        vx.explain(cnn, inputs(1), method=method)
    assert "\n" not in str(caught.value)
    swin = hf_swin()
    with pytest.raises(UnsupportedCapability, match="SwinAttention"):
        vx.explain(swin, inputs(1), method=method)
    assert hooks(swin) == 0
    with pytest.raises(InvalidTarget):
        vx.explain(hf_vit(), inputs(2), method=method, targets=[0, 1, 2])
    scripted = torch.jit.trace(plain_vit(), inputs(1), check_trace=False)
    with pytest.raises(UnsupportedCapability, match="attention"):
        vx.explain(scripted, inputs(1), method=method)
