"""Tiny transformers for the ViT tests: Hugging Face ViT, DeiT (distillation token), Swin and
ConvNeXt from configs (random weights, no download), and a plain-torch ViT with
``nn.MultiheadAttention``. 32x32 inputs, patch 8 (Swin and ConvNeXt: patch 4). Importing
``transformers`` imports torchvision, which needs ``gradcam_reference``'s schema fix here.
"""
from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn

from gradcam_reference import _import_torchvision
from vexplain.demo.train_vit import Block as ViTBlock

__test__ = False


def hf():
    """The ``transformers`` package, or a skip when it is not installed."""
    if importlib.util.find_spec("transformers") is None:
        pytest.skip("transformers is not installed (pip install 'vexplain[transformers]')")
    _import_torchvision()
    import transformers

    return transformers


def hf_vit(seed: int = 0, layers: int = 2, eager: bool = False) -> nn.Module:
    T = hf()
    torch.manual_seed(seed)
    config = T.ViTConfig(image_size=32, patch_size=8, num_channels=3, hidden_size=16, num_hidden_layers=layers, num_attention_heads=2, intermediate_size=32, num_labels=5)
    if eager:
        config._attn_implementation = "eager"
    return T.ViTForImageClassification(config).eval()


def hf_deit(seed: int = 0) -> nn.Module:
    T = hf()
    torch.manual_seed(seed)
    config = T.DeiTConfig(image_size=32, patch_size=8, num_channels=3, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, num_labels=5)
    return T.DeiTForImageClassificationWithTeacher(config).eval()


def hf_dinov2(seed: int = 0, registers: int = 0, eager: bool = False) -> nn.Module:
    """A tiny DINOv2 classifier (class token, with ``registers`` register tokens after it)."""
    T = hf()
    torch.manual_seed(seed)
    shape = dict(image_size=32, patch_size=8, num_channels=3, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2, num_labels=5)
    if registers:
        config = T.Dinov2WithRegistersConfig(**shape, num_register_tokens=registers)
        model = T.Dinov2WithRegistersForImageClassification
    else:
        config, model = T.Dinov2Config(**shape), T.Dinov2ForImageClassification
    if eager:
        config._attn_implementation = "eager"
    built = model(config).eval()
    if registers:  # they start as zeros: equal tokens would tie every attention ranking
        with torch.no_grad():
            built.dinov2_with_registers.embeddings.register_tokens.normal_()
    return built


def hf_clip(seed: int = 0, eager: bool = False) -> nn.Module:
    """A tiny CLIP image classifier (its vision tower, patch tokens mean-pooled, a linear head)."""
    T = hf()
    torch.manual_seed(seed)
    text = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, vocab_size=64, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    vision = dict(image_size=32, patch_size=8, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2)
    config = T.CLIPConfig(text_config=text, vision_config=vision, num_labels=5)
    if eager:
        config._attn_implementation = "eager"
        config.vision_config._attn_implementation = "eager"
    return T.CLIPForImageClassification(config).eval()


def hf_swin(seed: int = 0) -> nn.Module:
    T = hf()
    torch.manual_seed(seed)
    config = T.SwinConfig(image_size=32, patch_size=4, num_channels=3, embed_dim=8, depths=[1, 1], num_heads=[1, 2], window_size=4, num_labels=5)
    return T.SwinForImageClassification(config).eval()


def hf_convnext(seed: int = 0) -> nn.Module:
    T = hf()
    torch.manual_seed(seed)
    config = T.ConvNextConfig(num_channels=3, num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], num_labels=5)
    return T.ConvNextForImageClassification(config).eval()


Block = ViTBlock  # the pre-norm block of the demo ViT (vexplain/demo/train_vit.py), the same module


class TinyViT(nn.Module):
    """Conv patch embedding (8x8, stride 8), a class token, position embeddings, two blocks, final
    norm, a linear head on the class token. ``conv_patches=False``: patches embedded by a Linear;
    ``hybrid=True``: a ViT-hybrid, two 3x3 stride-2 convolutions then a 2x2 stride-2 patch embedding."""

    def __init__(self, dim: int = 16, heads: int = 2, depth: int = 2, classes: int = 5, patch: int = 8, size: int = 32, conv_patches: bool = True, hybrid: bool = False):
        super().__init__()
        self.patch = patch
        if hybrid:
            self.embed = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 12, 3, 2, 1), nn.ReLU(), nn.Conv2d(12, dim, 2, 2))
        else:
            self.embed = nn.Conv2d(3, dim, patch, patch) if conv_patches else nn.Linear(3 * patch * patch, dim)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.5)
        self.pos = nn.Parameter(torch.randn(1, 1 + (size // patch) ** 2, dim) * 0.5)
        self.blocks = nn.Sequential(*[Block(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(self.embed, nn.Linear):
            tokens = self.embed(x).flatten(2).transpose(1, 2)
        else:
            patches = nn.functional.unfold(x, self.patch, stride=self.patch).transpose(1, 2)
            tokens = self.embed(patches)
        tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], dim=1) + self.pos
        return self.head(self.norm(self.blocks(tokens))[:, 0])


def plain_vit(seed: int = 0, conv_patches: bool = True) -> nn.Module:
    torch.manual_seed(seed)
    return TinyViT(conv_patches=conv_patches).eval()


def hybrid_vit(seed: int = 0) -> nn.Module:
    """A plain-torch ViT-hybrid: its patch embedding (stride 2) runs on a stride-4 conv stem, 4x4 tokens."""
    torch.manual_seed(seed)
    return TinyViT(hybrid=True).eval()


def inputs(count: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(count, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def timm_vit(seed: int = 0, fused: bool = True) -> nn.Module:
    """A tiny timm ViT (random weights, no download): 32x32 inputs, patch 8, 2 blocks of 2 heads;
    ``fused=False`` switches its attention to the eager path. Skips when timm is not installed."""
    if importlib.util.find_spec("timm") is None:
        pytest.skip("timm is not installed (pip install 'vexplain[test]')")
    _import_torchvision()
    import timm

    torch.manual_seed(seed)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2, embed_dim=16, num_heads=2, num_classes=5)
    for block in model.blocks:
        block.attn.fused_attn = fused
    return model.eval()


def hf_attentions_and_gradients(model: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> tuple[list, list]:
    """An eager Hugging Face model's ``output_attentions=True`` probabilities and d(logit_t)/d(them)."""
    output = model(x, output_attentions=True)
    attentions = list(output.attentions)
    grads = torch.autograd.grad(output.logits.gather(1, targets[:, None]).sum(), attentions)
    return [a.detach() for a in attentions], list(grads)


def timm_attentions_and_gradients(model: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> tuple[list, list]:
    """An eager timm ViT's probabilities (the tensor its ``attn_drop`` receives, the one multiplied
    with the values) and d(logit_t)/d(them)."""
    found: list[torch.Tensor] = []
    handles = [b.attn.attn_drop.register_forward_hook(lambda m, a, out: found.append(out)) for b in model.blocks]
    try:
        logits = model(x)
    finally:
        for handle in handles:
            handle.remove()
    grads = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), found)
    return [a.detach() for a in found], list(grads)
