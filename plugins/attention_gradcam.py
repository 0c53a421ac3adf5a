"""Gradient-weighted attention relevance (Chefer, Gur & Wolf, ICCV 2021), the self-attention rule."""
from __future__ import annotations

from typing import Any

import torch

from vexplain.core.adapter import ATTENTION, GRADIENTS, ModelAdapter
from vexplain.core.explainer import Attribution, Explainer
from vexplain.core.hookspecs import hookimpl
from vexplain.core.postprocess import upsample
from vexplain.core.targets import TargetRequest
from vexplain.core.token_grids import token_layout

from .cam_base import GRID_OPTION, PREFIX_OPTION


def relevance(attentions: list[torch.Tensor], gradients: list[torch.Tensor]) -> torch.Tensor:
    """R ``(N, T, T)`` (float64): R = I, then for each layer (first first) Ā = E_h[(∇A ⊙ A)⁺] and
    R ← R + Ā·R, from each layer's probabilities A and gradients ∇A ``(N, heads, T, T)``."""
    first = attentions[0]
    tokens = first.shape[-1]
    result = torch.eye(tokens, dtype=torch.float64, device=first.device).expand(first.shape[0], tokens, tokens)
    for attention, gradient in zip(attentions, gradients):
        weighted = (gradient.double() * attention.double()).clamp(min=0).mean(dim=1)
        result = result + weighted @ result
    return result


class AttentionGradCAM(Explainer):
    """Generic attention-model explainability, the self-attention rule (Chefer, Gur & Wolf 2021):
    with A_l a layer's attention probabilities ``(heads, T, T)`` and ∇A_l = ∂y_t/∂A_l the gradient
    of the target's score (the logit, not a probability) w.r.t. them, Ā_l = E_h[(∇A_l ⊙ A_l)⁺]
    (ReLU, then the mean over heads); relevance R starts at the identity and for each layer, first
    to last, R ← R + Ā_l·R. The layer map is the class token's row (token 0) of R over the
    patch-grid tokens (prefix tokens — class, distillation — dropped), reshaped to the grid
    (``layer_maps``); the map is that upsampled bilinearly (``align_corners=False``). Raw (no
    min-max); class-specific: each input's target changes the map. Non-negative.

    The probabilities and their gradients come from the attention modules' own projections
    (``vexplain.adapters.torch_attention``: Hugging Face ViT, DeiT, BEiT, DINOv2, CLIP, ..., timm ``Attention``,
    ``nn.MultiheadAttention``), made part of the graph without changing any value, so fused SDPA
    attention gives the eager map; one forward and one backward per batch. ``grid=(h, w)`` /
    ``prefix=k`` override the inferred grid and prefix; ``exp.options`` records ``grid``,
    ``prefix`` and the attention ``layers`` used."""

    name = "attention_gradcam"
    requires = (ATTENTION, GRADIENTS)
    summary = "class token's row of R ← R + E_h[(∇A ⊙ A)⁺]·R (R = I) over the patch grid (class-specific)"
    paper = "Chefer, Gur & Wolf, Generic Attention-model Explainability for Interpreting Bi-Modal and Encoder-Decoder Transformers, ICCV 2021"
    options = {"grid": GRID_OPTION, "prefix": PREFIX_OPTION}

    def attribute(self, adapter: ModelAdapter, inputs: torch.Tensor, targets: TargetRequest, options: dict[str, Any]) -> Attribution:
        result = adapter.attention_gradients(inputs, targets)
        tokens = result.attentions[-1].shape[-1]
        layout = token_layout((len(inputs), tokens, tokens), tuple(inputs.shape[2:]), adapter.patch_stride(), "attention", options.get("grid"), options.get("prefix"))
        product = relevance([a.to(inputs.device) for a in result.attentions], [g.to(inputs.device) for g in result.gradients])
        layer_maps = product[:, 0, layout.prefix :].reshape(len(inputs), *layout.grid).float()
        maps = upsample(layer_maps, tuple(inputs.shape[2:]))
        notes = {"grid": list(layout.grid), "prefix": layout.prefix, "layers": list(result.layers)}
        return Attribution(maps=maps, scores=result.scores, targets=result.targets, layer_maps=layer_maps, notes=notes)


@hookimpl
def register_explainers(register) -> None:
    register(AttentionGradCAM)
