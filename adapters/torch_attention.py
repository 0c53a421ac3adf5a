"""Attention probabilities of a PyTorch transformer, recomputed from each attention module's
inputs so that fused (SDPA, flash) attention works and the model is never modified.

For every supported module, a forward pre-hook reads the module's input tokens ``x`` (and, for
Hugging Face modules, the additive ``attention_mask`` it is given, e.g. BEiT's relative position
bias) and computes ``softmax(q kᵀ · s + mask)`` per head, where ``q``/``k`` are the module's own
query/key projections of ``x`` and ``s`` its scaling (1/√d by default). Supported:

* Hugging Face ViT / DeiT / BEiT attention (``ViTAttention``, ``DeiTAttention``, ``BeitAttention``
  with ``q_proj``/``k_proj``; older ``*SelfAttention`` with ``query``/``key``);
* ``torch.nn.MultiheadAttention`` (its ``in_proj_weight``, or ``q_proj_weight``/``k_proj_weight``),
  self-attention without ``attn_mask``, ``key_padding_mask`` or ``add_bias_kv``.

Any other module whose class name contains "Attention" (and that holds no supported one) is
refused with ``refuse(hint)`` (the adapter's ``UnsupportedCapability``) naming its class; so is a model with no attention at all.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from vexplain.core.errors import VexplainError

HF_ATTENTION = frozenset({"ViTAttention", "DeiTAttention", "BeitAttention", "ViTSelfAttention", "DeiTSelfAttention", "BeitSelfAttention"})
WORKS = "Hugging Face ViT/DeiT/BEiT attention and torch.nn.MultiheadAttention"


def _supported(module: torch.nn.Module) -> bool:
    if isinstance(module, torch.nn.MultiheadAttention):
        return True
    if type(module).__name__ not in HF_ATTENTION:
        return False
    return (hasattr(module, "q_proj") and hasattr(module, "k_proj")) or (hasattr(module, "query") and hasattr(module, "key"))


def has_attention(model: torch.nn.Module) -> bool:
    """Whether ``model`` has an attention module, supported or not (a class name containing
    "Attention", or ``nn.MultiheadAttention``): the torch adapter declares the capability then."""
    return any(isinstance(m, torch.nn.MultiheadAttention) or "attention" in type(m).__name__.lower() for m in model.modules())


def attention_modules(model: torch.nn.Module, refuse: Callable[[str], Exception]) -> list[tuple[str, torch.nn.Module]]:
    """The supported attention modules of ``model`` in module order; ``UnsupportedCapability`` when
    another attention module is present or there is none."""
    modules = list(model.named_modules())
    found = [(name, m) for name, m in modules if _supported(m)]
    inside = {id(m) for _, m in found}
    others = sorted({
        type(m).__name__ for _, m in modules
        if "attention" in type(m).__name__.lower() and id(m) not in inside and not any(id(s) in inside for s in m.modules())
    })
    if others:
        raise refuse(f"attention capture supports {WORKS}; this model has {', '.join(others)}")
    if not found:
        raise refuse(f"the model has no attention module ({WORKS} are supported)")
    return found


def _softmax(q: torch.Tensor, k: torch.Tensor, heads: int, scaling: float, mask: torch.Tensor | None) -> torch.Tensor:
    n, t, _ = q.shape
    q = q.reshape(n, t, heads, -1).transpose(1, 2).double()
    k = k.reshape(n, k.shape[1], heads, -1).transpose(1, 2).double()
    logits = q @ k.transpose(-1, -2) * scaling
    if mask is not None:
        logits = logits + mask.double()
    return torch.softmax(logits, dim=-1).float()


def _hf_probabilities(module: torch.nn.Module, args: tuple, kwargs: dict) -> torch.Tensor:
    x = args[0] if args else kwargs["hidden_states"]
    mask = args[1] if len(args) > 1 else kwargs.get("attention_mask")
    if hasattr(module, "q_proj"):
        q, k = module.q_proj(x), module.k_proj(x)
        heads = int(module.num_attention_heads)
        scaling = float(getattr(module, "scaling", (q.shape[-1] // heads) ** -0.5))
    else:
        q, k = module.query(x), module.key(x)
        heads = int(module.num_attention_heads)
        scaling = (q.shape[-1] // heads) ** -0.5
    return _softmax(q, k, heads, scaling, mask if isinstance(mask, torch.Tensor) else None)


def _mha_probabilities(module: torch.nn.MultiheadAttention, args: tuple, kwargs: dict, refuse: Callable[[str], Exception]) -> torch.Tensor:
    names = ("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask")
    given = {**dict(zip(names, args)), **kwargs}
    query, key = given["query"], given.get("key", given["query"])
    if given.get("attn_mask") is not None or given.get("key_padding_mask") is not None or module.bias_k is not None:
        raise refuse("nn.MultiheadAttention with attn_mask, key_padding_mask or add_bias_kv is not supported; only plain self-attention")
    if query.dim() == 2:
        query, key = query.unsqueeze(1), key.unsqueeze(1)
    if not module.batch_first:
        query, key = query.transpose(0, 1), key.transpose(0, 1)
    d = module.embed_dim
    if module.in_proj_weight is not None:
        wq, wk = module.in_proj_weight[:d], module.in_proj_weight[d : 2 * d]
    else:
        wq, wk = module.q_proj_weight, module.k_proj_weight
    bq = bk = None
    if module.in_proj_bias is not None:
        bq, bk = module.in_proj_bias[:d], module.in_proj_bias[d : 2 * d]
    q = torch.nn.functional.linear(query, wq, bq)
    k = torch.nn.functional.linear(key, wk, bk)
    return _softmax(q, k, module.num_heads, module.head_dim**-0.5, None)


def capture_attentions(model: torch.nn.Module, run: Callable[[], Any], refuse: Callable[[str], Exception]) -> tuple[list[str], list[torch.Tensor], Any]:
    """``(names, probabilities, run's result)``: each supported attention module's ``(N, heads, T, T)``
    float32 probabilities during ``run()``, in the order the modules ran. Hooks removed in ``finally``."""
    captured: list[tuple[str, torch.Tensor]] = []
    errors: list[Exception] = []

    def make_hook(name: str, module: torch.nn.Module):
        def hook(_: torch.nn.Module, args: tuple, kwargs: dict) -> None:
            try:
                with torch.no_grad():
                    if isinstance(module, torch.nn.MultiheadAttention):
                        captured.append((name, _mha_probabilities(module, args, kwargs, refuse)))
                    else:
                        captured.append((name, _hf_probabilities(module, args, kwargs)))
            except VexplainError as error:
                errors.append(error)

        return hook

    handles = [m.register_forward_pre_hook(make_hook(name, m), with_kwargs=True) for name, m in attention_modules(model, refuse)]
    try:
        result = run()
    finally:
        for handle in handles:
            handle.remove()
    if errors:
        raise errors[0]
    if not captured:
        raise refuse("no attention module ran in the forward pass")
    return [name for name, _ in captured], [p for _, p in captured], result
