"""LeGrad (Bousselham et al., 2024): gradients w.r.t. the attention maps as the explanation."""
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


def legrad_tokens(gradients: list[torch.Tensor]) -> torch.Tensor:
    """``(N, T)`` (float64): for each layer, ReLU(∇A) ``(N, heads, T, T)`` averaged over heads and
    over the T query rows; then averaged over layers."""
    per_layer = [g.double().clamp(min=0).mean(dim=(1, 2)) for g in gradients]
    return torch.stack(per_layer).mean(dim=0)


class LeGrad(Explainer):
    """LeGrad (Bousselham, Boggust, Chaybouti, Strobelt & Kuehne, 2024): the gradient itself is the
    explanation signal. For each attention layer l, ∇A_l = ∂y_t/∂A_l, the gradient of the target's
    score (the logit) w.r.t. the layer's attention probabilities ``(heads, T, T)``; E_l = ReLU(∇A_l)
    averaged over heads and over all T query rows (class token and patches), a value per key
    token; the explanation is E_l averaged over the layers, its patch-grid tokens (prefix tokens —
    class, distillation — dropped) reshaped to the grid (``layer_maps``) and upsampled bilinearly
    (``align_corners=False``). Raw (the paper min-max normalises the sum over layers; averaging
    differs from summing by the factor L). Class-specific, non-negative.

    Difference from the paper, stated: the paper scores each layer's own intermediate tokens
    through the model's final norm and head (s^l) and differentiates s^l w.r.t. A_l; vexplain
    differentiates the model's own score y_t (the paper's s^L) at every layer, which needs no
    knowledge of the head or the pooling: the last layer's term is the paper's, earlier layers'
    terms include the later layers' processing. All layers are used (the paper's definition; the
    authors' CLIP code starts at a chosen depth).

    One forward and one backward per batch, with the attention capture of
    ``vexplain.adapters.torch_attention`` (Hugging Face ViT, DeiT, BEiT, DINOv2, CLIP, ..., timm ``Attention``,
    ``nn.MultiheadAttention``; fused SDPA gives the eager map). ``grid=(h, w)`` / ``prefix=k``
    override the inferred grid and prefix; ``exp.options`` records ``grid``, ``prefix`` and the
    attention ``layers`` used."""

    name = "legrad"
    requires = (ATTENTION, GRADIENTS)
    summary = "ReLU(∂y_t/∂A_l) averaged over heads, query rows and layers, over the patch grid (class-specific)"
    paper = "Bousselham et al., LeGrad: An Explainability Method for Vision Transformers via Feature Formation Sensitivity, 2024"
    options = {"grid": GRID_OPTION, "prefix": PREFIX_OPTION}

    def attribute(self, adapter: ModelAdapter, inputs: torch.Tensor, targets: TargetRequest, options: dict[str, Any]) -> Attribution:
        result = adapter.attention_gradients(inputs, targets)
        tokens = result.attentions[-1].shape[-1]
        layout = token_layout((len(inputs), tokens, tokens), tuple(inputs.shape[2:]), adapter.patch_stride(), "attention", options.get("grid"), options.get("prefix"))
        signal = legrad_tokens([g.to(inputs.device) for g in result.gradients])
        layer_maps = signal[:, layout.prefix :].reshape(len(inputs), *layout.grid).float()
        maps = upsample(layer_maps, tuple(inputs.shape[2:]))
        notes = {"grid": list(layout.grid), "prefix": layout.prefix, "layers": list(result.layers)}
        return Attribution(maps=maps, scores=result.scores, targets=result.targets, layer_maps=layer_maps, notes=notes)


@hookimpl
def register_explainers(register) -> None:
    register(LeGrad)
