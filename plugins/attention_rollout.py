"""Attention rollout (Abnar & Zuidema, 2020)."""
from __future__ import annotations

from typing import Any

import torch

from vexplain.core.adapter import ATTENTION, ModelAdapter
from vexplain.core.explainer import Attribution, Explainer
from vexplain.core.hookspecs import hookimpl
from vexplain.core.options import Option, choice, number
from vexplain.core.postprocess import upsample
from vexplain.core.targets import TargetRequest
from vexplain.core.token_grids import token_layout

from .cam_base import GRID_OPTION, PREFIX_OPTION

FUSIONS = {"mean": lambda a: a.mean(dim=1), "max": lambda a: a.amax(dim=1), "min": lambda a: a.amin(dim=1)}


def fused_layer(attention: torch.Tensor, head_fusion: str, discard_ratio: float) -> torch.Tensor:
    """Ā ``(N, T, T)`` from one layer's probabilities ``(N, heads, T, T)``: heads fused, then in
    each row the ⌊discard_ratio·(T−1)⌋ lowest entries among columns 1..T−1 set to 0 (column 0,
    attention to the class token, is never dropped), then + I and each row divided by its sum."""
    fused = FUSIONS[head_fusion](attention.double())
    tokens = fused.shape[-1]
    drop = int(discard_ratio * (tokens - 1))
    if drop > 0:
        lowest = fused[..., 1:].topk(drop, dim=-1, largest=False).indices + 1
        fused = fused.scatter(-1, lowest, 0.0)
    fused = fused + torch.eye(tokens, dtype=fused.dtype, device=fused.device)
    return fused / fused.sum(dim=-1, keepdim=True)


def rollout(attentions: list[torch.Tensor], head_fusion: str = "mean", discard_ratio: float = 0.0) -> torch.Tensor:
    """Ā_L ⋯ Ā_1 ``(N, T, T)`` (float64) over the layers' probabilities, first layer first."""
    result = None
    for attention in attentions:
        layer = fused_layer(attention, head_fusion, discard_ratio)
        result = layer if result is None else layer @ result
    return result


class AttentionRollout(Explainer):
    """Attention rollout: for each attention layer l, Ā_l = the attention probabilities fused over
    heads (``head_fusion`` "mean" by default, "max" or "min"), with the lowest ``discard_ratio``
    fraction (default 0.0) of each row's entries set to 0 (of the T−1 entries beyond column 0:
    attention to the class token is never dropped), plus the identity, each row divided by its sum;
    rollout R = Ā_L ⋯ Ā_1. The layer map is the class token's row (token 0) of R over the patch-grid
    tokens, reshaped to the grid (``layer_maps``), and the map is that upsampled bilinearly
    (``align_corners=False``) to the input size. Non-negative, rows of R sum to 1 over all tokens.

    Class-agnostic: the targets are resolved and recorded (``exp.targets``) but change nothing.
    Attention probabilities are recomputed from each attention module's query/key projections
    (``vexplain.adapters.torch_attention``: Hugging Face attention of the ViT layout, timm ``Attention`` and
    ``nn.MultiheadAttention``), so fused SDPA attention gives the same map as eager attention.
    The grid and prefix tokens (class, distillation, registers) are inferred from the patch
    embedding and the input size, or the token count, like a token-grid layer's; ``grid=(h, w)`` / ``prefix=k`` override; ``exp.options``
    records ``grid``, ``prefix`` and the attention ``layers`` used."""

    name = "attention_rollout"
    requires = (ATTENTION,)
    summary = "class token's row of Π_l (head-fused attention + I, row-normalised) over the patch grid (class-agnostic)"
    paper = "Abnar & Zuidema, Quantifying Attention Flow in Transformers, ACL 2020"
    options = {
        "head_fusion": Option("mean", choice(*FUSIONS), "how each layer's heads are fused: mean, max or min"),
        "discard_ratio": Option(0.0, number(minimum=0.0, maximum=1.0), "fraction of each row's lowest attention entries set to 0 before adding the identity (never the class token's column)"),
        "grid": GRID_OPTION,
        "prefix": PREFIX_OPTION,
    }

    def attribute(self, adapter: ModelAdapter, inputs: torch.Tensor, targets: TargetRequest, options: dict[str, Any]) -> Attribution:
        result = adapter.attentions(inputs)
        chosen = targets.select(result.scores)
        tokens = result.attentions[-1].shape[-1]
        layout = token_layout((len(inputs), tokens, tokens), tuple(inputs.shape[2:]), adapter.patch_stride(), "attention", options.get("grid"), options.get("prefix"))
        product = rollout([a.to(inputs.device) for a in result.attentions], options["head_fusion"], options["discard_ratio"])
        layer_maps = product[:, 0, layout.prefix :].reshape(len(inputs), *layout.grid).float()
        maps = upsample(layer_maps, tuple(inputs.shape[2:]))
        notes = {"grid": list(layout.grid), "prefix": layout.prefix, "layers": list(result.layers)}
        return Attribution(maps=maps, scores=result.scores, targets=chosen, layer_maps=layer_maps, notes=notes)


@hookimpl
def register_explainers(register) -> None:
    register(AttentionRollout)
