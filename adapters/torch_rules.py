"""Modified backward rules for PyTorch models (DeepLift's rescale rule, deconvolution), without
touching the model.

Like ``torch_guided``, a thread-local ``TorchFunctionMode`` is entered around the call and reroutes
the model's nonlinearities through ``autograd.Function``s whose forward value is unchanged and
whose backward applies the rule, so no hook is registered on the model and a module called twice
(a ResNet block's shared ``nn.ReLU``) is handled per call.

``rescale`` (DeepLift, Shrikumar et al. 2017): the batch is ``[x; x₀]`` (inputs, then their
references, same length). At every elementwise nonlinearity y = f(z) — ReLU (all forms), ELU,
LeakyReLU, GELU, SiLU, Softplus, sigmoid, tanh — the gradient is replaced by the multiplier
``g · Δy/Δz`` with Δ = (input half − reference half), the same for both halves, and the ordinary
gradient where |Δz| < ``EPS`` (Captum's ``nonlinear``). At ``max_pool2d``, with y and y₀ the pooled
input and reference and m = max(y, y₀), the multiplier is (P_x(g · (m − y₀)) + P_{x₀}(g · (y − m))) / Δz,
P_x being max pooling's backward at x's argmax positions (Captum's ``maxpool``); where windows
overlap this sums the windows' contributions (the chain rule), where Captum's ``max_unpool``
keeps one of them, so the two agree on non-overlapping pools only.

``deconvolution`` (Zeiler & Fergus 2014): every ReLU's backward is ``max(g, 0)``, the forward
mask ignored (Captum's ``Deconvolution``).

TorchScript code does not dispatch to Python, so TorchScript models do not offer these rules.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from vexplain.core.adapter import GradientResult
from vexplain.core.errors import InvalidInput, ModelLoadError
from vexplain.core.propagation import Propagation
from vexplain.core.targets import TargetRequest, gather_scores

from .torch_lrp import propagate

#: |Δz| below which the rescale rule uses the ordinary gradient (Captum's default ``eps``)
EPS = 1e-10
RULES = ("rescale", "deconvolution")

_RELU = (F.relu, torch.relu, torch.Tensor.relu)
_RELU_IN_PLACE = (torch.relu_, torch.Tensor.relu_)
_ELEMENTWISE = (torch.sigmoid, torch.Tensor.sigmoid, torch.tanh, torch.Tensor.tanh, F.elu, F.leaky_relu, F.gelu, F.silu, F.softplus)
#: positional index of the ``inplace`` flag, for the functions that take one
_INPLACE_AT = {F.relu: 1, F.elu: 2, F.leaky_relu: 2, F.silu: 1}


def _halves(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if t.dim() == 0 or t.shape[0] % 2:
        raise InvalidInput(f"DeepLift's rescale rule met a nonlinearity on a tensor of shape {tuple(t.shape)}, not [inputs; references] along dim 0; the model must keep the batch dimension first")
    return t.chunk(2)


class _Rescale(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        y = fn(z)
        ctx.fn, ctx.z, ctx.y = fn, z.detach().clone(), y.detach().clone()  # clones: in-place callers may overwrite
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        z, y = ctx.z, ctx.y
        with torch.enable_grad():
            leaf = z.clone().requires_grad_(True)
            (plain,) = torch.autograd.grad(ctx.fn(leaf), leaf, grad)
        z_in, z_ref = _halves(z)
        y_in, y_ref = _halves(y)
        delta_in = torch.cat(2 * [z_in - z_ref])
        delta_out = torch.cat(2 * [y_in - y_ref])
        return torch.where(delta_in.abs() < EPS, plain, grad * delta_out / delta_in), None


class _RescaleMaxPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, pool: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        y = pool(z)
        ctx.pool, ctx.z, ctx.y = pool, z.detach().clone(), y.detach().clone()
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        z, y = ctx.z, ctx.y
        y_in, y_ref = _halves(y)
        top = torch.maximum(y_in, y_ref)
        delta_out = torch.cat([top - y_ref, y_in - top])
        with torch.enable_grad():
            leaf = z.clone().requires_grad_(True)
            pooled = ctx.pool(leaf)
            (plain,) = torch.autograd.grad(pooled, leaf, grad, retain_graph=True)
            (spread,) = torch.autograd.grad(pooled, leaf, grad * delta_out)
        z_in, z_ref = _halves(z)
        delta_in = torch.cat(2 * [z_in - z_ref])
        spread_in, spread_ref = _halves(spread)
        return torch.where(delta_in.abs() < EPS, plain, torch.cat(2 * [spread_in + spread_ref]) / delta_in), None


class _Deconvolution(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, z: torch.Tensor) -> torch.Tensor:
        return torch.relu(z)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad.clamp(min=0)


class _RuleMode(TorchFunctionMode):
    """Routes the nonlinearities ``rule`` covers through its Functions and counts them."""

    def __init__(self, rule: str) -> None:
        super().__init__()
        self.rule = rule
        self.calls = 0

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = dict(kwargs or {})
        is_relu = func in _RELU or func in _RELU_IN_PLACE
        covered = is_relu or (self.rule == "rescale" and (func in _ELEMENTWISE or func is F.max_pool2d))
        if not covered:
            return func(*args, **kwargs)
        if func is F.max_pool2d:
            if kwargs.get("return_indices") or (len(args) > 6 and args[6]):
                return func(*args, **kwargs)  # indices are not a value DeepLift propagates
            self.calls += 1
            rest = args[1:]
            return _RescaleMaxPool.apply(args[0], lambda t: F.max_pool2d(t, *rest, **kwargs))
        self.calls += 1
        in_place = func in _RELU_IN_PLACE or bool(kwargs.pop("inplace", False))
        at = _INPLACE_AT.get(func)
        rest = list(args[1:])
        if at is not None and len(args) > at:
            in_place = in_place or bool(args[at])
            rest = rest[: at - 1]
        x = args[0]
        if is_relu:
            out = _Deconvolution.apply(x) if self.rule == "deconvolution" else _Rescale.apply(x, torch.relu)
        else:
            out = _Rescale.apply(x, lambda t: func(t, *rest, **kwargs))
        return x.copy_(out) if in_place else out


def _check_model(model: torch.nn.Module, rule: str) -> None:
    scripted = [name for name, m in model.named_modules() if isinstance(m, torch.jit.ScriptModule)]
    if scripted:
        raise ModelLoadError(f"backward rule '{rule}' cannot reach the nonlinearities inside TorchScript submodule '{scripted[0] or '<root>'}'; use the eager nn.Module")


def rule_gradients(
    model: torch.nn.Module,
    scores_of: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    targets: TargetRequest,
    rule: str | Propagation,
    references: torch.Tensor | None,
    batches: Iterator[slice],
) -> GradientResult:
    """d(y_t)/d(x) under ``rule`` for ``inputs`` in ``batches``; ``scores_of(batch)`` is the model's
    scores. ``rescale`` needs ``references`` (one per input) and returns DeepLift multipliers; it
    runs ``[x; x₀]`` through the model and, as Captum does, back-propagates y_t of both halves.
    A ``Propagation`` rule returns relevance instead (``torch_lrp``)."""
    if isinstance(rule, Propagation):
        _check_model(model, "relevance propagation")
        return propagate(model, scores_of, inputs, targets, rule, batches)
    if rule not in RULES:
        raise InvalidInput(f"unknown backward rule '{rule}'; choose one of {', '.join(RULES)}")
    if rule == "rescale" and (references is None or references.shape != inputs.shape):
        got = None if references is None else tuple(references.shape)
        raise InvalidInput(f"the rescale rule needs one reference per input, shape {tuple(inputs.shape)}; got {got}")
    _check_model(model, rule)
    grads, scores, chosen = [], [], []
    mode = _RuleMode(rule)
    with torch.enable_grad():
        for part in batches:
            x = inputs[part]
            batch = (torch.cat([x, references[part]]) if rule == "rescale" else x).detach().clone().requires_grad_(True)
            with mode:
                batch_scores = scores_of(batch)
            own = batch_scores[: len(x)]
            batch_targets = targets.select(own.detach(), part.start)
            total = gather_scores(own, batch_targets).sum()
            if rule == "rescale":
                total = total + gather_scores(batch_scores[len(x) :], batch_targets).sum()
            if not total.requires_grad:
                raise ModelLoadError("the explained scores do not depend on the input under this backward rule; return a tensor computed from the output")
            (grad,) = torch.autograd.grad(total, batch)
            grads.append(grad[: len(x)])
            scores.append(own.detach())
            chosen.append(batch_targets)
    if mode.calls == 0 and any(isinstance(m, (torch.nn.ReLU, torch.nn.MaxPool2d)) for m in model.modules()):
        raise ModelLoadError(f"backward rule '{rule}' reached none of the model's nonlinearities (compiled code?); use an eager nn.Module")
    return GradientResult(torch.cat(grads), torch.cat(scores), torch.cat(chosen))
