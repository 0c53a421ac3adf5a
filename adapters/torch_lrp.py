"""Relevance propagation (LRP rules, excitation backprop) through a PyTorch model, without
touching it.

Like ``torch_rules``, a thread-local ``TorchFunctionMode`` is entered around the forward pass: no
hook is registered and no parameter is modified, so a model shared by threads is never seen in a
changed state, and nothing needs undoing when the call raises.

The backward pass carries, for every tensor t, a "gradient" g_t such that the relevance of t is
R_t = t ⊙ g_t. Every linear, bias-free operation the mode does not intercept (reshapes, average
pooling, means, the addition of a residual connection) then applies LRP's z-rule by the ordinary
chain rule: for y = A x, R_x = x ⊙ Aᵀ(R_y / y) = x ⊙ Aᵀ g_y, so a sum splits relevance in proportion
to each term's contribution and average pooling spreads it in proportion to the inputs; max
pooling's gradient gives its winner all of it (winner-takes-all, as in Zennit and TorchRay, which
give max pooling no rule); ReLU's gradient passes it unchanged where the unit is active (it is
zero elsewhere). Intercepted:

* ``F.linear``, ``conv1d/2d/3d``: an ``autograd.Function`` whose forward value is the layer's and
  whose backward applies the layer's rule to R_out = z ⊙ g_out and returns g_in = R_in / x (never
  divided: each rule is x ⊙ (something)); the first layer's z-box and flat rules, whose relevance
  is not proportional to x, return that part as the gradient of a zero "anchor" input, which
  follows the input through flattening, reshaping and permuting before that layer.
* ``F.batch_norm`` in inference mode applied to such a layer's output: merged into it
  (W' = W·γ/σ, b' = (b − μ)·γ/σ + β) and the merged layer takes the rule, as Zennit's canonizers
  do but per call, by dataflow; elsewhere (and for excitation backprop, as TorchRay) it passes
  relevance unchanged, as Zennit's ``Pass``.
* other elementwise activations (sigmoid, tanh, ELU, LeakyReLU, GELU, SiLU, Softplus): relevance
  passes unchanged (g_in = g_out · y / x), as Zennit's ``Pass``.

Denominators are stabilized as Zennit's: t + s·sign(t) with sign(0) = 1. TorchScript code does
not dispatch to Python, so TorchScript models do not offer propagation.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from vexplain.core.adapter import GradientResult
from vexplain.core.errors import InvalidInput, InvalidOption, InvalidTarget, ModelLoadError
from vexplain.core.propagation import Propagation
from vexplain.core.targets import TargetRequest, gather_scores

#: excitation backprop's denominator offset (TorchRay's)
EXCITATION_EPS = 1e-20

_CONVS = {torch.conv1d: 1, torch.conv2d: 2, torch.conv3d: 3}
_CONV_PARAMS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_LINEAR_PARAMS = ("input", "weight", "bias")
_PASSED = (torch.sigmoid, torch.Tensor.sigmoid, torch.tanh, torch.Tensor.tanh, F.elu, F.leaky_relu, F.gelu, F.silu, F.softplus)
_INPLACE_AT = {F.elu: 2, F.leaky_relu: 2, F.silu: 1}
_BATCH_NORM = inspect.signature(F.batch_norm)
#: ops that only rearrange (or copy) the input before the first layer; the first-layer rule
#: follows the input through them (an MLP's ``nn.Flatten``)
_REARRANGING = {
    torch.flatten, torch.Tensor.flatten, torch.Tensor.view, torch.Tensor.reshape, torch.reshape, torch.Tensor.contiguous,
    torch.Tensor.permute, torch.permute, torch.Tensor.transpose, torch.transpose, torch.Tensor.unsqueeze, torch.unsqueeze,
    torch.Tensor.squeeze, torch.squeeze, torch.Tensor.clone, torch.clone, torch.Tensor.to, torch.Tensor.float,
}


def _stabilized(t: torch.Tensor, amount: float) -> torch.Tensor:
    return t + amount * torch.where(t >= 0, 1.0, -1.0).to(t.dtype)


def _divide(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """numerator / denominator, 0 where the denominator is 0 (epsilon = 0 on a zero output)."""
    zero = denominator == 0
    return torch.where(zero, 0.0, numerator / torch.where(zero, 1.0, denominator))


class _Layer:
    """One call of a linear or convolution layer: its input's conv settings, (merged) weights, its
    output value and the rule it takes."""

    def __init__(self, mode: "_PropagationMode", index: int, dims: int | None, weight: torch.Tensor, bias: torch.Tensor | None, conf: dict[str, Any], value: torch.Tensor):
        self.mode, self.index, self.dims, self.conf = mode, index, dims, conf
        self.weight, self.bias = weight.detach(), None if bias is None else bias.detach()
        self.value = value
        self.z = value.detach().clone()  # the output may be changed in place downstream (out += identity)
        spec = mode.spec
        self.rule = spec.linear if dims is None else spec.conv
        self.first = spec.first if index == 0 else None
        self.bounds: tuple[torch.Tensor, ...] = ()  # the z-box bounds, laid out as the input x

    def merged(self, scale: torch.Tensor, shift: torch.Tensor, value: torch.Tensor) -> "_Layer":
        """This layer followed by y = scale · z + shift per output channel (an inference BatchNorm)."""
        shape = (-1,) + (1,) * (self.weight.dim() - 1)
        bias = shift if self.bias is None else self.bias * scale + shift
        merged = _Layer.__new__(_Layer)
        merged.__dict__.update(self.__dict__)
        merged.weight, merged.bias = self.weight * scale.reshape(shape), bias
        merged.value, merged.z = value, value.detach().clone()
        return merged

    def forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if self.dims is None:
            return F.linear(x, weight, bias)
        conv = (F.conv1d, F.conv2d, F.conv3d)[self.dims - 1]
        return conv(x, weight, bias, self.conf["stride"], self.conf["padding"], self.conf["dilation"], self.conf["groups"])

    def transposed(self, x: torch.Tensor, weight: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Wᵀ s: the layer's vector-Jacobian product with ``weight`` at ``x`` (no forward pass)."""
        if self.dims is None:
            return s @ weight
        padding = self.conf["padding"]
        if isinstance(padding, str):  # 'same'/'valid': let autograd work out the geometry
            with torch.enable_grad():
                leaf = x.detach().requires_grad_(True)
                (grad,) = torch.autograd.grad(self.forward(leaf, weight, None), leaf, s)
            return grad
        tuple_of = torch.nn.modules.utils._ntuple(self.dims)
        stride, dilation = tuple_of(self.conf["stride"]), tuple_of(self.conf["dilation"])
        grad, _, _ = torch.ops.aten.convolution_backward(
            s, x, weight, None, stride, tuple_of(padding), dilation, False, (0,) * self.dims, self.conf["groups"], (True, False, False)
        )
        return grad

    def propagate(self, x: torch.Tensor, relevance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(g_in, extra) with R_in = x ⊙ g_in + extra for the relevance ``relevance`` at the output."""
        if self.first is not None:
            return _FIRST_RULES[self.first](self, x, relevance)
        return _RULES[self.rule](self, x, relevance)


def _clamped(t: torch.Tensor | None, positive: bool) -> torch.Tensor | None:
    if t is None:
        return None
    return t.clamp(min=0) if positive else t.clamp(max=0)


def _epsilon(layer: _Layer, x: torch.Tensor, relevance: torch.Tensor) -> tuple[torch.Tensor, None]:
    s = _divide(relevance, _stabilized(layer.z, layer.mode.spec.epsilon))
    return layer.transposed(x, layer.weight, s), None


def _signed_split(layer: _Layer, x: torch.Tensor, pairs: list[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Σ over (mask, weight for x⁺ with its bias, weight for x⁻, relevance share) terms: the
    generalized rules' g_in, with x⁺ and x⁻ taking different weights (Zennit's Gamma, AlphaBeta)."""
    negative = bool((x < 0).any())
    positive_x, negative_x = x.clamp(min=0), x.clamp(max=0)
    g = torch.zeros_like(x)
    for on_positive, bias, on_negative, relevance, coefficient in pairs:
        z = layer.forward(positive_x, on_positive, bias)
        if negative:
            z = z + layer.forward(negative_x, on_negative, None)
        s = _divide(relevance, _stabilized(z, layer.mode.spec.stabilizer)) * coefficient
        part = layer.transposed(x, on_positive, s)
        if negative:
            part = torch.where(x < 0, layer.transposed(x, on_negative, s), part)
        g = g + part
    return g


def _alpha_beta(alpha: float, beta: float) -> Callable[[_Layer, torch.Tensor, torch.Tensor], tuple[torch.Tensor, None]]:
    def rule(layer: _Layer, x: torch.Tensor, relevance: torch.Tensor) -> tuple[torch.Tensor, None]:
        w_plus, w_minus = layer.weight.clamp(min=0), layer.weight.clamp(max=0)
        pairs = [(w_plus, _clamped(layer.bias, True), w_minus, relevance, alpha)]
        if beta:
            pairs.append((w_minus, _clamped(layer.bias, False), w_plus, relevance, -beta))
        return _signed_split(layer, x, pairs), None

    return rule


def _gamma(layer: _Layer, x: torch.Tensor, relevance: torch.Tensor) -> tuple[torch.Tensor, None]:
    gamma, w, b = layer.mode.spec.gamma, layer.weight, layer.bias
    w_up, w_down = w + gamma * w.clamp(min=0), w + gamma * w.clamp(max=0)
    b_up = None if b is None else b + gamma * b.clamp(min=0)
    b_down = None if b is None else b + gamma * b.clamp(max=0)
    pairs = [(w_up, b_up, w_down, relevance * (layer.z > 0), 1.0)]
    falling = relevance * (layer.z < 0)
    if bool(falling.any()):
        pairs.append((w_down, b_down, w_up, falling, 1.0))
    return _signed_split(layer, x, pairs), None


def _excitation(layer: _Layer, x: torch.Tensor, relevance: torch.Tensor) -> tuple[torch.Tensor, None]:
    weight = layer.weight
    if layer.mode.negate and layer.index == layer.mode.count - 1:
        weight = -weight
    weight = weight.clamp(min=0)
    s = relevance / (layer.forward(x, weight, None) + EXCITATION_EPS)
    return layer.transposed(x, weight, s), None


def _zbox(layer: _Layer, x: torch.Tensor, relevance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    low, high = layer.bounds
    w_plus, w_minus = layer.weight.clamp(min=0), layer.weight.clamp(max=0)
    b_plus, b_minus = _clamped(layer.bias, True), _clamped(layer.bias, False)
    z = layer.z - layer.forward(low, w_plus, b_plus) - layer.forward(high, w_minus, b_minus)
    s = _divide(relevance, _stabilized(z, layer.mode.spec.stabilizer))
    extra = -low * layer.transposed(x, w_plus, s) - high * layer.transposed(x, w_minus, s)
    return layer.transposed(x, layer.weight, s), extra


def _flat(layer: _Layer, x: torch.Tensor, relevance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    ones = torch.ones_like(layer.weight)
    s = _divide(relevance, _stabilized(layer.forward(torch.ones_like(x), ones, None), layer.mode.spec.stabilizer))
    return torch.zeros_like(x), layer.transposed(x, ones, s)


_RULES = {"epsilon": _epsilon, "gamma": _gamma, "alpha2beta1": _alpha_beta(2.0, 1.0), "alpha1beta0": _alpha_beta(1.0, 0.0), "excitation": _excitation}
_FIRST_RULES = {"zbox": _zbox, "flat": _flat}


class _Relevance(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, anchor: torch.Tensor | None, layer: _Layer) -> torch.Tensor:
        ctx.layer = layer
        ctx.save_for_backward(x)
        return layer.value

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, None]:
        (x,) = ctx.saved_tensors
        layer = ctx.layer
        g, extra = layer.propagate(x.detach(), layer.z * grad)
        return g, extra, None


class _Pass(torch.autograd.Function):
    """Relevance passes an elementwise y = f(x) unchanged: g_in = g_out · y / x."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        ctx.ratio = _divide(value.detach(), x.detach())
        return value.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.ratio, None


def _bound(names: tuple[str, ...], args: tuple, kwargs: dict) -> dict[str, Any]:
    bound = dict(zip(names, args))
    bound.update(kwargs)
    return bound


class _PropagationMode(TorchFunctionMode):
    """Routes linear layers, convolutions, batch norms and activations through the rules of ``spec``."""

    def __init__(self, spec: Propagation, leaf: torch.Tensor, bounds: tuple[torch.Tensor, torch.Tensor] | None, anchor: torch.Tensor | None):
        super().__init__()
        self.spec = spec
        # tensors that are the input rearranged, with the anchor and z-box bounds rearranged alike
        self.inputs: dict[int, tuple[torch.Tensor, tuple[torch.Tensor, ...]]] = {}
        if anchor is not None:
            companions = (anchor,) if bounds is None else (anchor, *(b.expand_as(leaf) for b in bounds))
            self.inputs[id(leaf)] = (leaf, companions)
        self.count = 0
        self.negate = False
        self.last: tuple[torch.Tensor, _Layer, torch.Tensor, torch.Tensor | None] | None = None  # (output, layer, input, anchor) of the latest layer

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = dict(kwargs or {})
        if func is F.linear or func in _CONVS:
            return self._layer(func, args, kwargs)
        if func is F.batch_norm:
            return self._batch_norm(args, kwargs)
        if func in _PASSED:
            return self._passed(func, args, kwargs)
        if func in _REARRANGING and self.count == 0 and args and id(args[0]) in self.inputs:
            return self._rearranged(func, args, kwargs)
        return func(*args, **kwargs)

    def _input_of_first(self, x: Any) -> tuple[torch.Tensor, ...] | None:
        known = self.inputs.get(id(x))
        return known[1] if known is not None and known[0] is x else None

    def _rearranged(self, func: Any, args: tuple, kwargs: dict) -> Any:
        companions = self._input_of_first(args[0])
        out = func(*args, **kwargs)
        if companions is not None and isinstance(out, torch.Tensor):
            self.inputs[id(out)] = (out, tuple(func(c, *args[1:], **kwargs) for c in companions))
        return out

    def _layer(self, func: Any, args: tuple, kwargs: dict) -> torch.Tensor:
        dims = _CONVS.get(func)
        bound = _bound(_LINEAR_PARAMS if dims is None else _CONV_PARAMS, args, kwargs)
        x = bound["input"]
        index = self.count
        self.count += 1
        first = self.spec.first if index == 0 else None
        companions = self._input_of_first(x) if first is not None else None
        self.inputs.clear()
        if first is not None and companions is None:
            raise InvalidOption(f"the {first} rule applies to the model's first layer, which must take the input image itself (or only flattened, reshaped or permuted); this model's first {'linear layer' if dims is None else 'convolution'} takes a computed tensor: choose a composite without a first-layer rule (epsilon, gamma, alpha2beta1, alpha1beta0, epsilon_alpha2_beta1)")
        with torch.no_grad():
            value = func(*args, **kwargs)
        if not isinstance(x, torch.Tensor) or not x.requires_grad:
            return value
        conf = {"stride": bound.get("stride", 1), "padding": bound.get("padding", 0), "dilation": bound.get("dilation", 1), "groups": bound.get("groups", 1)}
        layer = _Layer(self, index, dims, bound["weight"], bound.get("bias"), conf, value.detach())
        anchor = None
        if companions is not None:
            anchor, layer.bounds = companions[0], companions[1:]
        out = _Relevance.apply(x, anchor, layer)
        self.last = (out, layer, x, anchor)
        return out

    def _batch_norm(self, args: tuple, kwargs: dict) -> torch.Tensor:
        bound = _BATCH_NORM.bind(*args, **kwargs)
        bound.apply_defaults()
        given = bound.arguments
        with torch.no_grad():
            value = F.batch_norm(*args, **kwargs)
        x = given["input"]
        if not isinstance(x, torch.Tensor) or not x.requires_grad:
            return value
        inference = not given["training"] and given["running_mean"] is not None and given["running_var"] is not None
        if self.spec.merge_batchnorm and inference and self.last is not None and x is self.last[0]:
            _, layer, layer_input, anchor = self.last
            scale = torch.rsqrt(given["running_var"] + given["eps"])
            if given["weight"] is not None:
                scale = scale * given["weight"]
            shift = -given["running_mean"] * scale
            if given["bias"] is not None:
                shift = shift + given["bias"]
            merged = layer.merged(scale.detach(), shift.detach(), value.detach())
            return _Relevance.apply(layer_input, anchor, merged)
        return _Pass.apply(x, value.detach())

    def _passed(self, func: Any, args: tuple, kwargs: dict) -> torch.Tensor:
        x = args[0]
        in_place = bool(kwargs.pop("inplace", False))
        rest = list(args[1:])
        at = _INPLACE_AT.get(func)
        if at is not None and len(args) > at:
            in_place = in_place or bool(args[at])
            rest = rest[: at - 1]
        value = func(x.detach(), *rest, **kwargs)
        if not x.requires_grad:
            return x.copy_(value) if in_place else value
        out = _Pass.apply(x, value)
        return x.copy_(out) if in_place else out


def _bounds(spec: Propagation, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The z-box bounds as ``(N or 1, C, 1, ...)`` tensors: the given numbers, or each input's own
    per-channel minimum and maximum."""
    reduce_dims = tuple(range(2, x.dim()))
    shape = (1, x.shape[1]) + (1,) * (x.dim() - 2)

    def bound(given: float | tuple[float, ...] | None, lowest: bool) -> torch.Tensor:
        if given is None:
            return x.detach().amin(dim=reduce_dims, keepdim=True) if lowest else x.detach().amax(dim=reduce_dims, keepdim=True)
        values = torch.as_tensor(given, dtype=x.dtype, device=x.device).reshape(-1)
        if values.numel() not in (1, x.shape[1]):
            raise InvalidOption(f"option '{'low' if lowest else 'high'}' takes one number or one per channel ({x.shape[1]}); got {values.numel()}")
        return values.expand(x.shape[1]).reshape(shape)

    return bound(spec.low, True), bound(spec.high, False)


def _layer_capture(model: torch.nn.Module, layer: str) -> tuple[Any, Any]:
    from .torch import _Capture

    capture = _Capture(for_grad=True)
    return capture, model.get_submodule(layer).register_forward_hook(capture)


def propagate(
    model: torch.nn.Module,
    scores_of: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    targets: TargetRequest,
    spec: Propagation,
    batches: Iterator[slice],
) -> GradientResult:
    """The relevance of y_t under ``spec`` for ``inputs`` in ``batches``: at the input ``(N, C, H, W)``,
    or at ``spec.layer``'s output; ``scores_of(batch)`` is the model's scores."""
    relevances, scores, chosen = [], [], []
    capture, handle = _layer_capture(model, spec.layer) if spec.layer is not None else (None, None)
    try:
        with torch.enable_grad():
            for part in batches:
                # read at a layer, relevance never goes below it: the layers before it run plainly
                x = inputs[part].detach().clone().requires_grad_(spec.layer is None)
                anchor = torch.zeros_like(x, requires_grad=True) if spec.first is not None else None
                bounds = _bounds(spec, x) if spec.first == "zbox" else None
                mode = _PropagationMode(spec, x, bounds, anchor)
                if capture is not None:
                    capture.output = None
                with mode:
                    batch_scores = scores_of(x)
                if mode.count == 0:
                    raise ModelLoadError("relevance propagation met no linear or convolution layer in the model's forward pass (compiled code?); use an eager nn.Module")
                batch_targets = targets.select(batch_scores.detach(), part.start)
                target_scores = gather_scores(batch_scores, batch_targets)
                if not target_scores.requires_grad:
                    raise ModelLoadError("the explained scores do not depend on the input under relevance propagation; return a tensor computed from the output")
                if spec.seed == "one":
                    if bool((target_scores == 0).any()):
                        raise InvalidTarget("excitation backprop puts probability 1 on the target score, which is exactly 0 here, so no relevance reaches the layers; pick another target")
                    target_scores = target_scores / target_scores.detach()
                total = target_scores.sum()
                if capture is not None:
                    relevance = _at_layer(capture, spec, mode, total)
                else:
                    wrt = [x] if anchor is None else [x, anchor]
                    grads = torch.autograd.grad(total, wrt, allow_unused=True)
                    relevance = x.detach() * _or_zeros(grads[0], x)
                    if anchor is not None:
                        relevance = relevance + _or_zeros(grads[1], x)
                relevances.append(relevance.detach())
                scores.append(batch_scores.detach())
                chosen.append(batch_targets)
    finally:
        if handle is not None:
            handle.remove()
    return GradientResult(torch.cat(relevances), torch.cat(scores), torch.cat(chosen))


def _or_zeros(grad: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(like) if grad is None else grad


def _at_layer(capture: Any, spec: Propagation, mode: _PropagationMode, total: torch.Tensor) -> torch.Tensor:
    activation = capture.output
    if activation is None or not activation.requires_grad:
        raise InvalidInput(f"layer '{spec.layer}' did not output a float tensor in the forward pass; pick a layer that computes a feature map")
    if spec.contrastive:
        return activation.detach() * _contrastive_gradient(mode, total, activation, spec.layer)
    (grad,) = torch.autograd.grad(total, activation, allow_unused=True)
    if grad is None:
        raise InvalidTarget(f"the explained score does not depend on layer '{spec.layer}'; pick a layer that feeds that score")
    return activation.detach() * grad


def _contrastive_gradient(mode: _PropagationMode, total: torch.Tensor, activation: torch.Tensor, layer: str) -> torch.Tensor:
    """The propagated signal at ``activation`` for the target minus that with the last layer's
    weights negated. Every rule below the last layer is linear in the signal it receives, so the
    two signals are subtracted at the last layer's input and sent down once (TorchRay likewise
    subtracts at its contrast layer); two backward passes to ``activation`` give the same."""
    top = mode.last[2] if mode.last is not None else None
    below = top is not None and top is not activation and top.requires_grad
    wrt = top if below else activation
    (signal,) = torch.autograd.grad(total, wrt, retain_graph=True, allow_unused=True)
    if signal is None:
        raise InvalidTarget(f"the explained score does not depend on layer '{layer}'; pick a layer that feeds that score")
    mode.negate = True
    (negated,) = torch.autograd.grad(total, wrt, retain_graph=below)
    if not below:
        return signal - negated
    (grad,) = torch.autograd.grad(top, activation, grad_outputs=signal - negated, allow_unused=True)
    if grad is None:
        raise InvalidTarget(f"the explained score does not depend on layer '{layer}'; pick a layer that feeds that score")
    return grad
