"""Attention probabilities of a PyTorch transformer, recomputed from each attention module's
inputs so that fused (SDPA, flash) attention works and the model is never modified.

For every supported module, a forward pre-hook reads the module's input tokens ``x`` (and, for
Hugging Face modules, the additive ``attention_mask`` it is given, e.g. BEiT's relative position
bias) and computes ``softmax(q kᵀ · s + mask)`` per head, where ``q``/``k`` are the module's own
query/key projections of ``x`` and ``s`` its scaling (1/√d by default). Supported:

* Hugging Face attention of the ViT layout, ``<Family>Attention`` or ``<Family>SelfAttention``
  for the families in :data:`HF_FAMILIES` (ViT, DeiT, BEiT, DINOv2 with or without registers,
  ViT-MAE, ViT-MSN, I-JEPA, CLIP's and SigLIP's towers), with ``q_proj``/``k_proj``/``v_proj``
  (or the older ``query``/``key``/``value``) linear layers, ``num_attention_heads`` or
  ``num_heads``, ``scaling`` or ``scale`` and an optional ``o_proj``/``out_proj``, not causal.
  Windowed (Swin) and rotary (DINOv3) attention are other computations and are refused;
* ``torch.nn.MultiheadAttention`` (its ``in_proj_weight``, or ``q_proj_weight``/``k_proj_weight``),
  self-attention without ``attn_mask``, ``key_padding_mask`` or ``add_bias_kv``;
* timm's ``Attention`` (``timm.layers.Attention``: fused ``qkv``, ``q_norm``/``k_norm``, an
  optional additive or boolean ``attn_mask``; not ``is_causal``).

With ``gradients=True`` (:func:`capture_attention_gradients`) the recomputed probabilities are
also made part of the graph without changing any value: each probability tensor P becomes a leaf,
and the module's output o is replaced by o + (m(P) − m(P).detach()), where m(P) is the module's
own value mixing (P·V through its output projection, V from the detached input). The forward
value is o exactly (x − x = 0), the gradient reaching o is unchanged, and d(score)/dP is the
gradient of the score w.r.t. the attention probabilities, as eager attention's retained
``attentions`` would give, under fused SDPA as well.

Every recomputation is checked against the module itself: in eval mode the module's output must
equal m(P) within 1e-4 of its magnitude (16 epsilons of a half-precision output), so a module whose attention has terms this recomputation
does not know (rotary position embeddings, a bias computed inside it, a causal mask) is refused
by name rather than explained with wrong probabilities. Any other module whose class name contains
"Attention" (and that holds no supported one) is refused with ``refuse(hint)`` (the adapter's
``UnsupportedCapability``) naming its class; so is a model with no attention at all.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from vexplain.core.errors import VexplainError

WORKS = "Hugging Face attention of the ViT layout (ViT, DeiT, BEiT, DINOv2, CLIP/SigLIP vision), timm's Attention and torch.nn.MultiheadAttention"
#: the recomputed output may differ from the module's by this fraction of its largest magnitude
#: (or 16 machine epsilons of the output's dtype, for half-precision models, if that is more)
OUTPUT_TOLERANCE = 1e-4
_HF_PROJECTIONS = (("q_proj", "k_proj", "v_proj"), ("query", "key", "value"))
#: Hugging Face model families whose attention is plain softmax(q·kᵀ·scale + mask)·V over all tokens
HF_FAMILIES = ("ViT", "DeiT", "Beit", "Dinov2", "Dinov2WithRegisters", "ViTMAE", "ViTMSN", "IJepa", "CLIP", "Siglip", "Siglip2")
_HF_NAMES = frozenset(f"{family}{kind}" for family in HF_FAMILIES for kind in ("Attention", "SelfAttention"))
#: a module's probabilities ``(N, heads, T, T)`` and its value mixing ``P -> output contribution``
Recomputed = tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]


def _is_timm(module: torch.nn.Module) -> bool:
    kind = type(module)
    return kind.__name__ == "Attention" and kind.__module__.startswith("timm.") and all(hasattr(module, a) for a in ("qkv", "num_heads", "head_dim", "proj"))


def _hf_projections(module: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module] | None:
    for names in _HF_PROJECTIONS:
        layers = [getattr(module, name, None) for name in names]
        if all(isinstance(layer, torch.nn.Linear) for layer in layers):
            return tuple(layers)  # type: ignore[return-value]
    return None


def _hf_heads(module: torch.nn.Module) -> int | None:
    heads = getattr(module, "num_attention_heads", getattr(module, "num_heads", None))
    return heads if isinstance(heads, int) and heads > 0 else None


def _is_hf(module: torch.nn.Module) -> bool:
    kind = type(module)
    return (kind.__module__.startswith("transformers.") and kind.__name__ in _HF_NAMES
            and _hf_projections(module) is not None and _hf_heads(module) is not None)


def _supported(module: torch.nn.Module) -> bool:
    return isinstance(module, torch.nn.MultiheadAttention) or _is_timm(module) or _is_hf(module)


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


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``(N, T, heads·d)`` → ``(N, heads, T, d)``."""
    return x.reshape(x.shape[0], x.shape[1], heads, -1).transpose(1, 2)


def _merge(p: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``P·V`` with the heads merged back: ``(N, T, heads·d)``."""
    mixed = p.to(v.dtype) @ v
    return mixed.transpose(1, 2).reshape(mixed.shape[0], mixed.shape[2], -1)


def _softmax(q: torch.Tensor, k: torch.Tensor, scaling: float, mask: torch.Tensor | None) -> torch.Tensor:
    """softmax(q kᵀ · scaling + mask) in float64, returned as float32; q, k ``(N, heads, T, d)``."""
    logits = q.double() @ k.double().transpose(-1, -2) * scaling
    if mask is not None:
        if mask.dtype == torch.bool:  # True = attend, as in SDPA
            mask = torch.zeros(mask.shape, dtype=torch.float64, device=mask.device).masked_fill(~mask, float("-inf"))
        logits = logits + mask.double()
    return torch.softmax(logits, dim=-1).float()


def _hf_attention(module: torch.nn.Module, args: tuple, kwargs: dict, refuse: Callable[[str], Exception]) -> Recomputed:
    x = args[0] if args else kwargs["hidden_states"]
    mask = args[1] if len(args) > 1 else kwargs.get("attention_mask")
    if getattr(module, "is_causal", False) or kwargs.get("causal_attention_mask") is not None:
        raise refuse(f"{type(module).__name__} is causal attention; attention methods explain bidirectional (vision) self-attention")
    heads = _hf_heads(module)
    query, key, value = _hf_projections(module)
    q, k = query(x), key(x)
    out = getattr(module, "o_proj", getattr(module, "out_proj", None))
    scaling = float(getattr(module, "scaling", getattr(module, "scale", (q.shape[-1] // heads) ** -0.5)))
    probabilities = _softmax(_heads(q, heads), _heads(k, heads), scaling, mask if isinstance(mask, torch.Tensor) else None)

    def mix(p: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            v = _heads(value(x), heads)
        merged = _merge(p, v)
        return merged if out is None else out(merged)

    return probabilities, mix


def _mha_attention(module: torch.nn.MultiheadAttention, args: tuple, kwargs: dict, refuse: Callable[[str], Exception]) -> Recomputed:
    names = ("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask")
    given = {**dict(zip(names, args)), **kwargs}
    query = given["query"]
    key, value = given.get("key", query), given.get("value", query)
    if given.get("attn_mask") is not None or given.get("key_padding_mask") is not None or module.bias_k is not None:
        raise refuse("nn.MultiheadAttention with attn_mask, key_padding_mask or add_bias_kv is not supported; only plain self-attention")
    unbatched = query.dim() == 2
    if unbatched:
        query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
    if not module.batch_first:
        query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
    d = module.embed_dim
    if module.in_proj_weight is not None:
        wq, wk, wv = module.in_proj_weight[:d], module.in_proj_weight[d : 2 * d], module.in_proj_weight[2 * d :]
    else:
        wq, wk, wv = module.q_proj_weight, module.k_proj_weight, module.v_proj_weight
    bq = bk = bv = None
    if module.in_proj_bias is not None:
        bq, bk, bv = module.in_proj_bias[:d], module.in_proj_bias[d : 2 * d], module.in_proj_bias[2 * d :]
    linear, heads = torch.nn.functional.linear, module.num_heads
    probabilities = _softmax(_heads(linear(query, wq, bq), heads), _heads(linear(key, wk, bk), heads), module.head_dim**-0.5, None)

    def mix(p: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            v = _heads(linear(value, wv, bv), heads)
        out = module.out_proj(_merge(p, v))
        out = out if module.batch_first else out.transpose(0, 1)
        return out.squeeze(1) if unbatched else out

    return probabilities, mix


def _timm_attention(module: torch.nn.Module, args: tuple, kwargs: dict, refuse: Callable[[str], Exception]) -> Recomputed:
    x = args[0] if args else kwargs["x"]
    mask = args[1] if len(args) > 1 else kwargs.get("attn_mask")
    if (args[2] if len(args) > 2 else kwargs.get("is_causal", False)):
        raise refuse("timm Attention with is_causal=True is not supported; only bidirectional self-attention")
    n, t, _ = x.shape
    q, k, v = module.qkv(x).reshape(n, t, 3, module.num_heads, module.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    probabilities = _softmax(module.q_norm(q), module.k_norm(k), float(module.scale), mask)

    def mix(p: torch.Tensor) -> torch.Tensor:
        gate = getattr(module, "gate", None)
        with torch.no_grad():
            values, gates = v.detach(), None if gate is None else gate(x).sigmoid()
        mixed = module.norm(_merge(p, values))
        return module.proj(mixed if gates is None else mixed * gates)

    return probabilities, mix


def _recompute(module: torch.nn.Module, args: tuple, kwargs: dict, refuse: Callable[[str], Exception]) -> Recomputed:
    with torch.no_grad():
        if isinstance(module, torch.nn.MultiheadAttention):
            return _mha_attention(module, args, kwargs, refuse)
        if _is_timm(module):
            return _timm_attention(module, args, kwargs, refuse)
        return _hf_attention(module, args, kwargs, refuse)


def _main_output(output: Any) -> torch.Tensor | None:
    if isinstance(output, tuple) and output:
        output = output[0]
    return output if isinstance(output, torch.Tensor) else None


def _check_reproduced(module: torch.nn.Module, output: Any, mixed: torch.Tensor, refuse: Callable[[str], Exception]) -> None:
    """Refuse a module whose output (eval mode: no attention dropout) is not m(P) of the
    recomputed probabilities within ``OUTPUT_TOLERANCE`` of its largest magnitude."""
    actual = _main_output(output)
    if module.training or actual is None or actual.shape != mixed.shape:
        return  # dropout changes the output; a shape mismatch is _add_to_output's error
    difference = float((actual.detach().double() - mixed.double()).abs().max())
    scale = max(1.0, float(actual.detach().abs().max()))
    tolerance = max(OUTPUT_TOLERANCE, 16 * torch.finfo(actual.dtype).eps) if actual.is_floating_point() else OUTPUT_TOLERANCE
    if not difference <= tolerance * scale:
        raise refuse(
            f"{type(module).__name__}'s output is not softmax(q·kᵀ·scale + mask)·V of its own projections (max difference {difference:.3g}): "
            f"its attention has terms vexplain cannot recompute (rotary position embeddings, a bias computed inside it?); attention capture supports {WORKS}"
        )


def _add_to_output(output: Any, tap: torch.Tensor, refuse: Callable[[str], Exception], kind: str) -> Any:
    """The module's output with ``tap`` (zero-valued) added to its main tensor."""
    if isinstance(output, torch.Tensor) and output.shape == tap.shape:
        return output + tap.to(output.dtype)
    if isinstance(output, tuple) and output and isinstance(output[0], torch.Tensor) and output[0].shape == tap.shape:
        return (output[0] + tap.to(output[0].dtype), *output[1:])
    raise refuse(f"{kind} returned an output the attention capture does not recognise (expected its mixed values first)")


def capture_attentions(
    model: torch.nn.Module, run: Callable[[], Any], refuse: Callable[[str], Exception], gradients: bool = False
) -> tuple[list[str], list[torch.Tensor], Any]:
    """``(names, probabilities, run's result)``: each supported attention module's ``(N, heads, T, T)``
    float32 probabilities during ``run()``, in the order the modules ran. With ``gradients`` each
    probability tensor is a leaf that requires grad and the model's output depends on it (module
    docstring): ``torch.autograd.grad(score, probabilities)`` then gives d(score)/dP; ``run`` must
    then be called with grad enabled. Hooks removed in ``finally``."""
    captured: list[tuple[str, torch.Tensor]] = []
    errors: list[Exception] = []

    def make_hook(name: str):
        def hook(module: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
            if errors:
                return None
            try:
                probabilities, mix = _recompute(module, args, kwargs, refuse)
                if probabilities.shape[-1] != probabilities.shape[-2]:
                    raise refuse(f"{type(module).__name__} '{name}' is cross-attention ({probabilities.shape[-2]} queries, {probabilities.shape[-1]} keys); attention methods follow self-attention over the tokens")
                if not gradients:
                    with torch.no_grad():
                        _check_reproduced(module, output, mix(probabilities), refuse)
                    captured.append((name, probabilities))
                    return None
                leaf = probabilities.requires_grad_(True)
                with torch.enable_grad():
                    mixed = mix(leaf)
                    _check_reproduced(module, output, mixed.detach(), refuse)
                    replaced = _add_to_output(output, mixed - mixed.detach(), refuse, type(module).__name__)
                captured.append((name, leaf))
                return replaced
            except VexplainError as error:
                errors.append(error)
                return None

        return hook

    handles = [m.register_forward_hook(make_hook(name), with_kwargs=True) for name, m in attention_modules(model, refuse)]
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
