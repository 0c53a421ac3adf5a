"""``vx.evaluate`` and ``vx.metrics``: scoring explanations with the registered metrics."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import torch

from .api import adapt, explain
from .concurrency import one_call_per_model
from .errors import InvalidInput, InvalidOption, InvalidTarget, PluginError
from .explanation import Explanation
from .inputs import as_input_tensor
from .metric import MASKS, METHOD, EvaluationCase
from .notices import collecting
from .options import resolve_options
from .registry import REGISTRY
from .boxes import Box
from .targets import PerInput, TargetRequest, Targets, bind_targets


@dataclass
class Evaluation:
    """The result of ``vx.evaluate``: one metric on one set of maps.

    ``values``: name → float64 ``(N,)`` per image (``values[headline]`` is ``score``);
    ``curves``: name → float64 ``(N, T)`` with x positions ``curve_x[name]``; ``targets`` int64
    ``(N,)``; ``options`` every metric option used (defaults filled in, derived values added);
    ``higher_is_better`` says which way ``score`` ranks methods; ``warnings`` the explanation's
    warnings (when an ``Explanation`` or a method name was evaluated) then any the metric raised.
    """

    metric: str
    method: str | None
    values: dict[str, np.ndarray]
    targets: np.ndarray
    headline: str
    higher_is_better: bool
    curves: dict[str, np.ndarray] = field(default_factory=dict)
    curve_x: dict[str, list] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def score(self) -> np.ndarray:
        """The headline value per image."""
        return self.values[self.headline]

    def summary(self) -> dict[str, float]:
        """Each value's mean over the images."""
        return {name: float(np.mean(value)) for name, value in self.values.items()}


@dataclass(frozen=True)
class MetricInfo:
    """A registered metric as listed by ``vx.metrics()``."""

    name: str
    requires: tuple[str, ...]
    needs: tuple[str, ...]
    plugin: str
    summary: str
    paper: str
    headline: str
    higher_is_better: bool
    options: dict[str, Any]


def metrics() -> list[MetricInfo]:
    """The registered metrics, sorted by name."""
    return [_metric_info(name, entry) for name, entry in sorted(REGISTRY.metrics().items())]


def metric_info(name: str) -> MetricInfo:
    """The registered metric ``name``; an unknown name raises ``UnknownMetric`` with the closest names."""
    entry = REGISTRY.metric(name)
    return _metric_info(entry.name, entry)


def _metric_info(name: str, entry: Any) -> MetricInfo:
    return MetricInfo(
        name=name,
        requires=tuple(entry.obj.requires),
        needs=tuple(entry.obj.needs),
        plugin=entry.plugin,
        summary=entry.obj.summary,
        paper=entry.obj.paper,
        headline=entry.obj.headline,
        higher_is_better=entry.obj.higher_is_better,
        options={k: o.default for k, o in entry.obj.options.items()},
    )


def as_masks(masks: Any, count: int, size: tuple[int, int]) -> torch.Tensor:
    """Ground truth as bool ``(N, H, W)``: from masks ``(N, H, W)`` (nonzero = object) or boxes
    ``(N, 4)`` as (x0, y0, x1, y1), end-exclusive pixel bounds."""
    array = np.asarray(masks.detach().cpu() if isinstance(masks, torch.Tensor) else masks)
    height, width = size
    if array.ndim == 2 and array.shape == (count, 4) and np.issubdtype(array.dtype, np.number):
        rows, cols = np.arange(height)[None, :, None], np.arange(width)[None, None, :]
        x0, y0, x1, y1 = (array[:, i, None, None] for i in range(4))
        return torch.from_numpy((rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1))
    if array.ndim == 3 and array.shape == (count, height, width) and (array.dtype == bool or np.issubdtype(array.dtype, np.number)):
        return torch.from_numpy(array != 0)
    raise InvalidInput(
        f"masks must be (N, H, W) = ({count}, {height}, {width}) or boxes (N, 4) as (x0, y0, x1, y1); got shape {array.shape}"
    )


def _maps_tensor(maps: Any, shape: tuple[int, ...]) -> torch.Tensor:
    n, _, height, width = shape
    array = maps.detach().cpu().numpy() if isinstance(maps, torch.Tensor) else np.asarray(maps)
    if array.ndim == 2:
        array = array[None]
    if array.shape != (n, height, width) or not np.issubdtype(array.dtype, np.number):
        raise InvalidInput(f"maps must be numbers of shape (N, H, W) = ({n}, {height}, {width}) to match the inputs; got {array.shape}")
    if not np.isfinite(array).all():
        raise InvalidInput("maps contain NaN or infinite values; all values must be finite")
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def declared_options(method: str, used: Mapping[str, Any]) -> dict[str, Any]:
    """The method's own options out of an explanation's ``options`` (which also holds notes)."""
    declared = REGISTRY.explainer(method).obj.options
    return {k: v for k, v in used.items() if k in declared}


@one_call_per_model(adapt)
def evaluate(
    model: Any,
    inputs: Any,
    maps_or_method: Any,
    metric: str = "deletion",
    targets: Targets = None,
    masks: Any = None,
    method_options: Mapping[str, Any] | None = None,
    **options: Any,
) -> Evaluation:
    """Score explanations of ``model`` on ``inputs`` with ``metric``.

    ``maps_or_method``: a method name (explained here with ``targets`` and ``method_options``), an
    ``Explanation`` (its maps, targets, method and options are used), or raw maps ``(N, H, W)``
    (targets default to each input's top class). ``targets`` are those of ``vx.explain`` (class
    indices, ``vx.targets`` objects, callables); an Explanation made for a target object needs the
    same one here, since the metrics re-score the model with it. ``masks``: ground truth for
    localisation metrics, ``(N, H, W)`` or boxes ``(N, 4)`` (x0, y0, x1, y1); without it, ``Box``
    targets give their boxes. ``options``: the metric's options (``vx.metrics()`` lists them with
    defaults). Thread-safe like ``explain``.
    """
    started = time.perf_counter()
    entry = REGISTRY.metric(metric)
    metric_class = entry.obj
    adapter = adapt(model)
    adapter.require(metric_class.requires, f"metric '{metric}'")
    resolved = resolve_options(metric, metric_class.options, options, kind="metric")
    tensor = as_input_tensor(inputs, adapter.input_channels).to(adapter.device)
    if method_options is not None and not isinstance(method_options, Mapping):
        raise InvalidOption(f"method_options must be a dict of the method's options; got {type(method_options).__name__}")
    method, used_options, explained_warnings = None, dict(method_options or {}), []
    if isinstance(maps_or_method, str):
        method = maps_or_method
        maps_or_method = explain(adapter, tensor, method=method, targets=targets, **used_options)
    adapter, request = bind_targets(adapter, targets, len(tensor))
    if isinstance(maps_or_method, Explanation):
        _check_same_targets(maps_or_method, request)
        method = maps_or_method.method
        explained_warnings = list(maps_or_method.warnings)
        if METHOD in metric_class.needs and not used_options:
            used_options = declared_options(method, maps_or_method.options)
        chosen = torch.from_numpy(np.asarray(maps_or_method.targets, dtype=np.int64))
        maps = _maps_tensor(maps_or_method.maps, tuple(tensor.shape))
        if len(chosen) != len(tensor):
            raise InvalidInput(f"the explanation has {len(chosen)} maps but there are {len(tensor)} inputs")
        chosen = TargetRequest(chosen, len(tensor)).select(torch.as_tensor(np.asarray(maps_or_method.scores)))  # range-checked
    else:
        maps = _maps_tensor(maps_or_method, tuple(tensor.shape))
        chosen = request.select(adapter.forward(tensor).cpu())
    if METHOD in metric_class.needs and method is None:
        raise InvalidOption(f"metric '{metric}' re-explains the model: pass a method name or an Explanation, not raw maps")
    mask_tensor = None
    boxes = target_boxes(request, len(tensor))
    if masks is None and boxes is not None and MASKS in metric_class.needs:
        masks = boxes
    if masks is not None:
        mask_tensor = as_masks(masks, len(tensor), tuple(tensor.shape[2:]))
    elif MASKS in metric_class.needs:
        raise InvalidInput(f"metric '{metric}' needs ground truth: pass masks=(N, H, W) masks or (N, 4) boxes, or Box targets")
    case = EvaluationCase(adapter, tensor, maps.to(adapter.device), chosen.to(torch.int64), mask_tensor, method, used_options, request.class_targets)
    prepared = time.perf_counter()
    with torch.inference_mode(False), collecting() as metric_warnings:
        result = metric_class().evaluate(case, resolved)
    _check_result(metric, metric_class, result, len(tensor))
    finished = time.perf_counter()
    return Evaluation(
        metric=metric,
        method=method,
        values={k: np.asarray(v, dtype=np.float64) for k, v in result.values.items()},
        targets=chosen.numpy(),
        headline=metric_class.headline,
        higher_is_better=metric_class.higher_is_better,
        curves={k: np.asarray(v, dtype=np.float64) for k, v in result.curves.items()},
        curve_x=dict(result.curve_x),
        options={**resolved, **result.notes, "targets": request.description, "backend": adapter.backend},
        timings={"prepare": prepared - started, "compute": finished - prepared, "total": finished - started},
        warnings=explained_warnings + [line for line in metric_warnings if line not in explained_warnings],
    )


def _check_same_targets(explanation: Explanation, request: TargetRequest) -> None:
    """An explanation made for a target object is evaluated with that target (the metrics re-score
    the model with it); class-index explanations keep their own classes, as before."""
    made_for = explanation.options.get("targets")
    if made_for is None:
        return
    if request.class_targets and isinstance(made_for, str) and made_for != "top":
        raise InvalidTarget(f"the explanation was made for targets {made_for!r}; pass the same targets= to evaluate")
    if not request.class_targets and made_for != request.description:
        raise InvalidTarget(f"the explanation was made for targets {made_for!r} but evaluate was given {request.description!r}; pass the same targets")


def target_boxes(request: TargetRequest, count: int) -> torch.Tensor | None:
    """The reference boxes ``(N, 4)`` of ``Box`` targets (one box for all inputs is repeated), else None."""
    target = request.score_function
    parts = target.targets if isinstance(target, PerInput) else [target]
    if not parts or not all(isinstance(t, Box) for t in parts):
        return None
    boxes = torch.cat([t.boxes for t in parts])
    return boxes.expand(count, 4) if len(boxes) == 1 else boxes


def _check_result(name: str, metric_class: type, result: Any, count: int) -> None:
    """A metric plugin's result has its headline and one value per image, curves (N, T) with T
    x positions; anything else is the plugin's fault, reported as ``PluginError``."""
    values = {k: np.asarray(v) for k, v in getattr(result, "values", {}).items()}
    if metric_class.headline not in values:
        raise PluginError(f"metric '{name}' returned no '{metric_class.headline}' (its headline); it returned {sorted(values)}")
    for key, value in values.items():
        if value.shape != (count,):
            raise PluginError(f"metric '{name}' returned '{key}' of shape {value.shape}; it must be one value per image, ({count},)")
    for key, curve in getattr(result, "curves", {}).items():
        curve = np.asarray(curve)
        x = result.curve_x.get(key)
        if curve.ndim != 2 or len(curve) != count or x is None or len(x) != curve.shape[1]:
            raise PluginError(f"metric '{name}' returned curve '{key}' of shape {curve.shape} with {0 if x is None else len(x)} x positions; it must be ({count}, T) with T positions")

