"""Exact incremental occlusion for PyTorch models (after Krypton, Nakandala et al., SIGMOD 2019).

An occluded box changes only a bounded region of each feature map: its projective field. The model
is traced once with ``torch.fx``; the clean image's activations are computed once; then, for a
batch of boxes, every layer with a rule in :mod:`.incremental_ops` recomputes only the patch that
can differ (grown by its kernel, stride and padding) from the cached activations around it. Once a
patch would cover most of a feature map, and at any layer without a rule, the full maps are built
and the rest of the network runs as usual. The result equals full inference up to float rounding.
"""
from __future__ import annotations

import contextlib
import weakref
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import fx

from vexplain.core.adapter import BoxScorer
from vexplain.core.concurrency import no_model_running, running_model

from .incremental_geometry import Patched, channels_last, materialize
from .incremental_ops import GlobalMeanRule, PointwiseRule, WindowRule, call_rule, foldable_batch_norm, has_call_rule, module_rule


#: on a GPU, ``engine="auto"`` runs images of fewer pixels by batched full inference
GPU_MIN_PIXELS = 128 * 128


def incremental_pays(device: torch.device, size: tuple[int, int]) -> bool:
    """Whether ``engine="auto"`` should pick incremental occlusion for images of ``size`` (H, W) on
    ``device``: always on the CPU; on an accelerator only from ``GPU_MIN_PIXELS`` on, since each
    layer's patch step launches a few small kernels, which costs more than it saves on small images
    (one H100: the 64² demo CNN, 8 images, 0.049 s incremental vs 0.019 s batched; 224² ResNet-50,
    ResNet-18 and VGG shapes: incremental 1.3–1.9× faster than batched; benchmarks/README.md)."""
    return device.type == "cpu" or size[0] * size[1] >= GPU_MIN_PIXELS


class NotIncremental(Exception):
    """The model cannot be run incrementally; the message says why."""


@dataclass
class CleanPass:
    """One image's activations (every graph node's output, feature maps channels-last) and the
    layer rules made from the weights at that time, which also tally the work done."""

    values: dict[fx.Node, Any]
    rules: dict[fx.Node, Any]

    def work_fraction(self) -> float | None:
        """Convolution multiply-adds computed so far, as a fraction of what batched full inference
        would have computed for the same windows."""
        rules = [rule for rule in self.rules.values() if isinstance(rule, WindowRule)]
        full = sum(rule.full_macs for rule in rules)
        return sum(rule.computed_macs for rule in rules) / full if full else None


class IncrementalOcclusion:
    """``scores(image, tops, lefts, window, baseline)``: the model's outputs for ``image`` with each
    box (``window`` high/wide at ``tops[b]``, ``lefts[b]``) set to ``baseline``, batched over boxes."""

    def __init__(self, model: torch.nn.Module):
        try:
            with no_model_running():  # the tracer patches torch.nn.Module for the whole process
                self.graph_module = fx.symbolic_trace(model)
        except Exception as error:  # tracing fails in many ways on dynamic control flow
            raise NotIncremental(f"torch.fx cannot trace it ({type(error).__name__}: {str(error).splitlines()[0][:120]})") from None
        self.nodes = list(self.graph_module.graph.nodes)
        inputs = [node for node in self.nodes if node.op == "placeholder"]
        if len(inputs) != 1:
            raise NotIncremental(f"its forward takes {len(inputs)} inputs; incremental occlusion needs exactly one")
        self.input_node = inputs[0]
        self.output_node = next(node for node in self.nodes if node.op == "output")
        self.modules = dict(self.graph_module.named_modules())
        self.has_module_rule = {node: rule is not None for node, rule in self._module_rules().items()}
        self.depends = self._input_dependents()
        first = [node for node in self.input_node.users]
        if not any(self._has_rule(node) for node in first):
            names = ", ".join(str(node.target) for node in first)
            raise NotIncremental(f"its first layer ({names}) is not one that incremental occlusion can recompute on a patch")
        self.incremental_layers = sum(1 for node in self.nodes if node in self.depends and self._has_rule(node))

    def _module_rules(self) -> dict[fx.Node, Any]:
        """A rule per module call; a batch norm that is a convolution's only user is folded into it
        (its own rule passes the patch through, which is right since only that convolution feeds it)."""
        rules: dict[fx.Node, Any] = {}
        for node in self.nodes:
            if node.op != "call_module":
                continue
            module = self.modules[node.target]
            users = list(node.users)
            norm = self.modules[users[0].target] if len(users) == 1 and users[0].op == "call_module" else None
            if isinstance(module, torch.nn.Conv2d) and norm is not None and foldable_batch_norm(norm):
                rules[node] = module_rule(module, folded=norm)
                if rules[node] is not None:
                    rules[users[0]] = PointwiseRule(lambda patch: patch)
                    continue
            rules.setdefault(node, module_rule(module))
        return rules

    def _has_rule(self, node: fx.Node) -> bool:
        if node.op == "call_module":
            return self.has_module_rule.get(node, False)
        return has_call_rule(node.op, node.target)

    def _input_dependents(self) -> set[fx.Node]:
        depends = {self.input_node}
        for node in self.nodes:
            if any(parent in depends for parent in node.all_input_nodes):
                depends.add(node)
        return depends

    def _evaluate(self, node: fx.Node, args: tuple, kwargs: dict) -> Any:
        if node.op == "call_module":
            return self.modules[node.target](*args, **kwargs)
        if node.op == "call_function":
            return node.target(*args, **kwargs)
        if node.op == "call_method":
            return getattr(args[0], node.target)(*args[1:], **kwargs)
        if node.op == "get_attr":
            value: Any = self.graph_module
            for part in str(node.target).split("."):
                value = getattr(value, part)
            return value
        raise NotIncremental(f"unexpected graph node {node.op}")

    def clean_passes(self, images: torch.Tensor) -> tuple[list[CleanPass], Any]:
        """One batched forward of ``images`` ``(N, C, H, W)`` under no_grad, split into each image's
        ``CleanPass`` (feature maps channels-last), and the batch's raw output. Layer rules are made
        here, so they see the current weights; the images share them (and their tallies)."""
        env: dict[fx.Node, Any] = {}
        with torch.no_grad():
            for node in self.nodes:
                if node.op == "placeholder":
                    env[node] = images
                elif node.op == "output":
                    env[node] = fx.node.map_arg(node.args[0], lambda n: env[n])
                else:
                    args = fx.node.map_arg(node.args, lambda n: env[n])
                    kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
                    env[node] = self._evaluate(node, args, kwargs)
        count = len(images)
        for node in self.depends:
            value = env[node]
            if isinstance(value, torch.Tensor) and value.dim() == 4 and len(value) == count:
                env[node] = channels_last(value)
        rules = self._module_rules()
        passes = [
            CleanPass({node: _row(value, index, count) if node in self.depends else value for node, value in env.items()}, rules)
            for index in range(count)
        ]
        return passes, env[self.output_node]

    def scores(
        self, clean: CleanPass, tops: torch.Tensor, lefts: torch.Tensor, window: tuple[int, int], baseline: float,
        field_limit: float | None = None,
    ) -> Any:
        """The model's output for the boxed images, from the ``clean_pass`` of the same image.
        ``field_limit`` (approximate): cut each layer's changed region to that fraction of its map."""
        image = clean.values[self.input_node][0]
        height, width = window
        box = torch.full((len(tops), height, width, image.shape[0]), float(baseline), dtype=image.dtype, device=image.device)
        box = box.permute(0, 3, 1, 2)
        env: dict[fx.Node, Any] = {
            self.input_node: Patched(image, box, tops, lefts, (tops, tops + height), (lefts, lefts + width))
        }
        with torch.no_grad():
            for node in self.nodes:
                if node.op == "placeholder":
                    continue
                if node.op == "output":
                    return fx.node.map_arg(node.args[0], lambda n: _full(env[n]))
                if node not in self.depends:
                    env[node] = clean.values[node]
                    continue
                env[node] = self._step(node, env, clean.values[node], clean.rules, field_limit)
        raise NotIncremental("the traced graph has no output")

    def _step(self, node: fx.Node, env: dict[fx.Node, Any], clean_out: Any, rules: dict[fx.Node, Any], field_limit: float | None) -> Any:
        args = fx.node.map_arg(node.args, lambda n: env[n])
        kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
        sources = _patched_sources(node, args)
        if sources and isinstance(clean_out, torch.Tensor):
            rule = rules.get(node) if node.op == "call_module" else call_rule(
                node.op, node.target, args, kwargs, _patched_flags(node, args)
            )
            spatial = clean_out.dim() == 4 and len(clean_out) == 1
            if rule is not None and (spatial or isinstance(rule, GlobalMeanRule)) and _rule_takes(node, args, kwargs):
                result = rule.apply(sources, clean_out[0] if spatial else clean_out, field_limit)
                if result is not None:
                    return result
        return self._evaluate(node, _materialized(args), _materialized(kwargs))


def _full(value: Any) -> Any:
    return materialize(value) if isinstance(value, Patched) else value


def _materialized(value: Any) -> Any:
    return fx.node.map_aggregate(value, _full)


def _patched_sources(node: fx.Node, args: tuple) -> list[Patched]:
    if node.target is torch.cat and args and isinstance(args[0], (list, tuple)):
        return [a for a in args[0] if isinstance(a, Patched)]
    return [a for a in args if isinstance(a, Patched)]


def _patched_flags(node: fx.Node, args: tuple) -> list[bool]:
    if node.target is torch.cat and args and isinstance(args[0], (list, tuple)):
        return [isinstance(a, Patched) for a in args[0]]
    return [isinstance(a, Patched) for a in args]


def _rule_takes(node: fx.Node, args: tuple, kwargs: dict) -> bool:
    """Module rules see exactly one patched positional input and no extra arguments."""
    if node.op != "call_module":
        return True
    return len(args) == 1 and isinstance(args[0], Patched) and not kwargs


#: per model: (module structure, its engine or why it has none); a reason is kept as text, since an
#: exception's traceback would hold the model and the weak key would never die
_ENGINES: "weakref.WeakKeyDictionary[torch.nn.Module, tuple[tuple, IncrementalOcclusion | str]]" = weakref.WeakKeyDictionary()


def incremental_engine(model: torch.nn.Module) -> IncrementalOcclusion:
    """The traced engine of ``model``, cached while its module structure is unchanged; raises
    :class:`NotIncremental` (also cached) when the model cannot be run incrementally."""
    structure = tuple((name, id(module)) for name, module in model.named_modules())
    cached = _ENGINES.get(model)
    if cached is None or cached[0] != structure:
        try:
            engine: IncrementalOcclusion | str = IncrementalOcclusion(model)
        except NotIncremental as error:
            engine = str(error)
        _ENGINES[model] = cached = (structure, engine)
    if isinstance(cached[1], str):
        raise NotIncremental(cached[1])
    return cached[1]


def incremental_box_scorers(
    model: torch.nn.Module,
    images: torch.Tensor,
    window: tuple[int, int],
    baseline: float,
    to_scores: Callable[[Any, int], torch.Tensor],
    eval_context: Callable[[], contextlib.AbstractContextManager],
    field_limit: float | None = None,
) -> list[BoxScorer]:
    """A ``BoxScorer`` per image of ``images`` ``(N, C, H, W)`` that runs ``model`` incrementally
    (call it with the model in eval mode; ``eval_context`` re-enters eval mode, and whatever else
    the clean pass ran under, for each batch).
    ``to_scores`` turns the model's raw output for ``count`` inputs into ``(count, K)`` scores."""
    engine = incremental_engine(model)
    with running_model():
        passes, output = engine.clean_passes(images)
        bases = to_scores(output, len(images))
    notes: dict[str, Any] = {"incremental_layers": engine.incremental_layers}
    if field_limit is not None:
        notes["field_limit"] = field_limit

    def scorer(clean: CleanPass, base: torch.Tensor) -> BoxScorer:
        def run(tops: torch.Tensor, lefts: torch.Tensor) -> torch.Tensor:
            with eval_context(), running_model():
                output = engine.scores(clean, tops, lefts, window, baseline, field_limit)
                scores = to_scores(output, len(tops))
            notes["incremental_work"] = round(clean.work_fraction() or 1.0, 4)
            return scores

        return BoxScorer(run, base, "incremental", notes)

    return [scorer(clean, base) for clean, base in zip(passes, bases)]


def _row(value: Any, index: int, count: int) -> Any:
    """Row ``index`` (kept as a batch of one) of every batched tensor in ``value``."""
    def one(item: Any) -> Any:
        batched = isinstance(item, torch.Tensor) and item.dim() >= 1 and len(item) == count
        return item[index : index + 1] if batched else item

    return fx.node.map_aggregate(value, one)
