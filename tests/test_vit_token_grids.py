"""Token-grid layers: ViT/DeiT/Swin tokens and channels-last maps as CAM layers, inferred grids,
overrides and typed errors, ViT-like default layers, and Grad-CAM equal to pytorch-grad-cam's
GradCAM with the matching reshape_transform."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import vexplain as vx
from vexplain.core.registry import REGISTRY
from vexplain.core.token_grids import CHANNELS_FIRST, CHANNELS_LAST, TOKENS, TokenLayout, count_grids, token_layout
from vexplain.plugins.cam_base import CamExplainer

from gradcam_reference import grad_cam
from models import close
from vit_models import hf_convnext, hf_deit, hf_swin, hf_vit, hybrid_vit, inputs, plain_vit


def cam_methods() -> list[str]:
    vx.methods()  # loads the plugins
    return sorted(m.name for m in vx.methods() if isinstance(REGISTRY.explainer(m.name).obj, type) and issubclass(REGISTRY.explainer(m.name).obj, CamExplainer))


# ---- the layout rules, by hand ----

def test_class_token_then_grid():
    assert token_layout((2, 17, 16), (32, 32), (8, 8), "l") == TokenLayout(TOKENS, (4, 4), 1)
    assert token_layout((2, 18, 16), (32, 32), (8, 8), "l") == TokenLayout(TOKENS, (4, 4), 2)
    assert token_layout((2, 16, 16), (32, 32), (8, 8), "l") == TokenLayout(TOKENS, (4, 4), 0)


def test_merged_grid_has_no_prefix():
    """Swin after one patch merging: 32/4/2 = 4x4 tokens."""
    assert token_layout((1, 16, 8), (32, 32), (4, 4), "l") == TokenLayout(TOKENS, (4, 4), 0)
    assert token_layout((1, 8, 8), (32, 64), (4, 4), "l") == TokenLayout(TOKENS, (2, 4), 0)


def test_channels_last_and_first():
    assert token_layout((1, 8, 8, 32), (32, 32), (4, 4), "l") == TokenLayout(CHANNELS_LAST, (8, 8))
    assert token_layout((1, 32, 8, 8), (32, 32), (4, 4), "l") == TokenLayout(CHANNELS_FIRST, (8, 8))
    assert token_layout((1, 32, 8, 8), (32, 32), None, "l").kind == CHANNELS_FIRST
    assert token_layout((1, 8, 8, 32), (32, 32), None, "l", grid=(8, 8)).kind == CHANNELS_LAST


def test_to_map_and_back_by_hand():
    tokens = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)  # 1 prefix + 2x2 grid, D = 3
    layout = TokenLayout(TOKENS, (2, 2), 1)
    maps = layout.to_map(tokens)
    assert maps.shape == (2, 3, 2, 2)
    assert maps[1, 2, 1, 0].item() == tokens[1, 1 + 2 * 1 + 0, 2].item()
    back = layout.from_map(maps[1:], tokens[1:])
    assert torch.equal(back, tokens[1:])


@pytest.mark.parametrize("shape, grid, prefix, option", [
    ((1, 40, 16), None, None, "grid="),  # 40 tokens fit no 4x4 or 2x2 grid with a prefix <= 16
    ((1, 18, 16), (4, 4), 1, "prefix"),
    ((1, 17, 16), (5, 5), None, "grid="),
])
def test_misfits_are_typed_errors_naming_the_option(shape, grid, prefix, option):
    with pytest.raises(vx.InvalidOption, match=option):
        token_layout(shape, (32, 32), (8, 8), "blocks.1", grid, prefix)


def test_grid_from_the_token_count_by_hand():
    """Without a fitting patch stride the grid comes from the count: ViT-B/16 at 224 (196 + class
    token), DINOv2 with 4 registers (256 + 5), a hybrid whose embedding stride 2 runs on a stride-4
    CNN (effective stride 8); strides that are no multiple of the embedding's do not count."""
    assert token_layout((1, 197, 8), (224, 224), None, "l") == TokenLayout(TOKENS, (14, 14), 1)
    assert token_layout((1, 261, 8), (224, 224), None, "l") == TokenLayout(TOKENS, (16, 16), 5)
    assert token_layout((1, 141, 8), (224, 160), None, "l") == TokenLayout(TOKENS, (14, 10), 1)
    assert token_layout((1, 65, 8), (64, 64), (2, 2), "l") == TokenLayout(TOKENS, (8, 8), 1)
    assert count_grids(17, (32, 32), None) == [(4, 4)]  # 3x3 + 8 prefix tokens: more prefix than half the grid
    assert count_grids(40, (32, 32), (8, 8)) == []  # 6x6 + 4 needs stride 6, no multiple of 8
    assert count_grids(40, (32, 32), None) == [(6, 6)]
    assert count_grids(30, (32, 32), None, prefix=5) == [(5, 5)]
    with pytest.raises(vx.InvalidOption, match="fit no patch grid"):  # a pooled (N, C, 1) vector is not C tokens
        token_layout((1, 197, 1), (224, 224), None, "pool")


def test_grid_from_the_token_count_when_ambiguous_asks_for_grid():
    """24 tokens on a 64x48 input: a 6x4 grid or a 5x4 grid with 4 prefix tokens."""
    with pytest.raises(vx.InvalidOption, match=r"several grids.*set grid=\(h, w\)"):
        token_layout((1, 24, 8), (64, 48), None, "blocks.0")
    assert token_layout((1, 24, 8), (64, 48), None, "blocks.0", grid=(5, 4)) == TokenLayout(TOKENS, (5, 4), 4)


def test_no_patch_embedding_reads_the_grid_from_the_token_count():
    """A ViT embedding patches with a Linear has no stride: 17 tokens of a 32x32 input are a 4x4
    grid and a class token, the maps equal the explicit grid=(4, 4), and a misfit override is an error."""
    model, x = plain_vit(conv_patches=False), inputs(2)
    inferred = vx.explain(model, x, method="gradcam", layer="blocks.1.norm1")
    assert (inferred.options["grid"], inferred.options["prefix"], inferred.options["layout"]) == ([4, 4], 1, "tokens")
    exp = vx.explain(model, x, method="gradcam", layer="blocks.1.norm1", grid=(4, 4))
    assert exp.layer_maps.shape == (2, 4, 4)
    close(inferred.layer_maps, exp.layer_maps, atol=0)
    with pytest.raises(vx.InvalidOption, match="grid"):
        vx.explain(model, x, method="gradcam", layer="blocks.1.norm1", grid="4,4", prefix=2)


# ---- models ----

DEFAULTS = [
    (hf_vit, "vit.layers.1.layernorm_before", [4, 4], 1),
    (hf_deit, "deit.layers.1.layernorm_before", [4, 4], 2),
    (hf_swin, "swin.encoder.layers.1", [4, 4], 0),
    (plain_vit, "blocks.1.norm1", [4, 4], 1),
    (hybrid_vit, "blocks.1.norm1", [4, 4], 1),
    (lambda: plain_vit(conv_patches=False), "blocks.1.norm1", [4, 4], 1),
]


@pytest.mark.parametrize("build, layer, grid, prefix", DEFAULTS)
def test_default_layer_and_recorded_grid(build, layer, grid, prefix):
    model = build()
    exp = vx.explain(model, inputs(2), method="gradcam")
    assert exp.options["layer"] == layer
    assert (exp.options["grid"], exp.options["prefix"], exp.options["layout"]) == (grid, prefix, "tokens")
    assert exp.layer_maps.shape == (2, *grid)
    assert np.ptp(exp.layer_maps) > 0  # class-token models: the default is not a layer with zero patch gradients


def test_convnext_keeps_its_channels_first_stage():
    exp = vx.explain(hf_convnext(), inputs(2), method="gradcam")
    assert exp.options["layer"] == "convnext.encoder.stages.1" and exp.options["grid"] is None and "layout" not in exp.options
    assert exp.layer_maps.shape == (2, 4, 4)


def test_convnext_channels_last_layer():
    """The block's pointwise conv runs channels-last (N, h, w, C): read as its 8x8 grid, Grad-CAM
    equals the same computation on the permuted tensor."""
    model, x = hf_convnext(), inputs(2)
    exp = vx.explain(model, x, method="gradcam", layer="convnext.encoder.stages.0.layers.0.pwconv1")
    assert (exp.options["grid"], exp.options["layout"]) == ([8, 8], "channels_last")
    captured = {}
    module = model.get_submodule("convnext.encoder.stages.0.layers.0.pwconv1")
    handle = module.register_forward_hook(lambda m, a, o: captured.setdefault("a", o) if o.retain_grad() is None else None)
    try:
        logits = model(x).logits
    finally:
        handle.remove()
    target = logits.argmax(1)
    logits.gather(1, target[:, None]).sum().backward()
    acts, grads = captured["a"].detach().permute(0, 3, 1, 2), captured["a"].grad.permute(0, 3, 1, 2)
    hand = torch.relu((grads.mean(dim=(2, 3), keepdim=True) * acts).sum(1))
    close(exp.layer_maps, hand.numpy(), atol=1e-5)
    model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("method", cam_methods() + ["guided_gradcam"])
@pytest.mark.parametrize("build", [hf_vit, plain_vit, hf_swin, hf_deit, hybrid_vit])
def test_every_cam_method_without_wrapper_or_layer(build, method):
    model, x = build(), inputs(2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    if method == "cam" and build is hf_deit:
        with pytest.raises(vx.UnsupportedCapability, match="nn.Linear"):  # the mean of two heads has no single classifier
            vx.explain(model, x, method=method)
        return
    exp = vx.explain(model, x, method=method)
    assert exp.maps.shape == (2, 32, 32) and np.isfinite(exp.maps).all()
    if method != "guided_gradcam":
        assert "grid" in exp.options
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks for m in model.modules())


@pytest.mark.parametrize("method", cam_methods() + ["guided_gradcam"])
def test_every_cam_method_on_convnext_at_its_last_stage(method):
    """ConvNeXt's natural default is its last stage's channels-first map, as for any CNN."""
    model, x = hf_convnext(), inputs(2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    exp = vx.explain(model, x, method=method)
    assert exp.maps.shape == (2, 32, 32) and np.isfinite(exp.maps).all()
    if method != "guided_gradcam":
        assert exp.options["layer"] == "convnext.encoder.stages.1" and "layout" not in exp.options
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks for m in model.modules())


@pytest.mark.parametrize("method", ["gradcam", "scorecam", "ablationcam", "eigencam"])
def test_batching_changes_nothing(method):
    model, x = hf_vit(), inputs(3)
    together = vx.explain(model, x, method=method).layer_maps
    alone = np.concatenate([vx.explain(model, x[i : i + 1], method=method).layer_maps for i in range(3)])
    close(together, alone, atol=1e-5)


# ---- pytorch-grad-cam ----

class Logits(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        out = self.model(x)
        return out if isinstance(out, torch.Tensor) else out.logits


def reshape(prefix: int, grid: tuple[int, int]):
    def transform(tensor):
        return tensor[:, prefix:, :].reshape(tensor.shape[0], *grid, tensor.shape[2]).permute(0, 3, 1, 2)

    return transform


@pytest.mark.parametrize("build, layer, prefix", [
    (hf_vit, "vit.layers.1.layernorm_before", 1),
    (hf_vit, "vit.layers.0", 1),
    (hf_deit, "deit.layers.1.layernorm_before", 2),
    (hf_swin, "swin.layernorm", 0),
    (plain_vit, "blocks.1.norm1", 1),
    (hybrid_vit, "blocks.1.norm1", 1),
])
def test_gradcam_equals_pytorch_grad_cam_with_reshape_transform(build, layer, prefix):
    """Their hand-written ViT/Swin reshape_transform on the same layer: the same maps within 1e-5."""
    gc = grad_cam()
    from pytorch_grad_cam.utils.image import scale_cam_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, x = build(), inputs(3)
    exp = vx.explain(model, x, method="gradcam", layer=layer, targets=[0, 3, 4])
    with gc.GradCAM(model=Logits(model), target_layers=[model.get_submodule(layer)], reshape_transform=reshape(prefix, (4, 4))) as cam:
        theirs = cam(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in (0, 3, 4)])
    # theirs: ReLU, min-max at layer size, cv2 resize to the input, then min-max again (their layer aggregation)
    close(scale_cam_image(scale_cam_image(exp.layer_maps, (32, 32))), theirs, atol=1e-5)
