"""The public entry points: ``adapt``, ``explain``, ``methods``, ``method_info``, ``resolve_options``."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch

from .adapter import ModelAdapter
from .concurrency import one_call_per_model
from .errors import InvalidOption, InvalidTarget, ModelLoadError
from .explanation import Explanation
from .inputs import as_input_tensor
from .preprocessing import PreparedImages
from .notices import collecting
from .options import resolve_options as resolve_declared
from .registry import REGISTRY
from .result_checks import blaming_non_finite_scores, check_attribution
from .targets import Targets, bind_targets


def adapt(model: Any, **options: Any) -> ModelAdapter:
    """A ``ModelAdapter`` for ``model``.

    ``model`` may be an ``nn.Module``, a TorchScript module, a path to a ``.onnx`` or TorchScript
    file, ONNX bytes, an ``onnxruntime.InferenceSession``, or already a ``ModelAdapter`` (returned
    as is). ``options`` go to the adapter (e.g. ``providers=`` for ONNX Runtime, ``weights=`` for
    a ``pkg.module:factory`` string). Registered adapter factories are tried by priority.
    """
    if isinstance(model, ModelAdapter):
        return model
    factories = sorted((e.obj for e in REGISTRY.adapters().values()), key=lambda f: -f.priority)
    for factory in factories:
        if factory.accepts(model):
            try:
                return factory.adapt(model, **options)
            except TypeError as error:  # Python's own words for a keyword the adapter does not take
                if "unexpected keyword argument" not in str(error):
                    raise
                raise InvalidOption(f"adapter '{factory.name}' {str(error).split(' ', 1)[-1]}; see its docstring for the options it takes") from None
    names = ", ".join(f.name for f in factories)
    raise ModelLoadError(
        f"cannot explain a {type(model).__name__}: give an nn.Module, a TorchScript or .onnx file, "
        f"'pkg.module:factory' with weights=, or an onnxruntime.InferenceSession (adapters: {names})"
    )


@one_call_per_model(adapt)
def explain(model: Any, inputs: Any, method: str = "gradcam", targets: Targets = None, **options: Any) -> Explanation:
    """Explain ``model``'s scores on ``inputs`` with ``method``.

    ``inputs``: float32 ``(N, C, H, W)`` or ``(C, H, W)``, numpy or torch, already preprocessed;
    or photos made into inputs by ``vx.prepare_images`` (their records go to ``exp.options["preprocess"]``).
    ``targets``: None (each input's top class), an int (all inputs), one int per input, a
    ``vx.targets`` object (``Box``, ``Region``, ``Similarity``, a plugin's kind; a list of them: one
    per input), or a callable mapping the model's raw output to one score per input (see
    ``core/targets.py``).
    ``options``: the method's options (``vx.methods()`` lists them with defaults). The method's
    required capabilities are checked before any work; the result is checked after it
    (``core/result_checks.py``: non-finite explained scores raise, doubtful maps add a line to
    ``exp.warnings``). Thread-safe: calls on one model run one at a time, calls on different
    models in parallel (``core/concurrency.py``).
    """
    started = time.perf_counter()
    entry = REGISTRY.explainer(method)
    method = entry.name  # an alias or another spelling names the method it stands for
    explainer_class = entry.obj
    adapter = adapt(model)
    adapter.require(explainer_class.requires_for(options), f"method '{method}'")
    resolved = resolve_declared(method, explainer_class.options, options)
    photos = inputs if isinstance(inputs, PreparedImages) else None
    inputs = photos.inputs if photos is not None else inputs
    tensor = as_input_tensor(inputs, adapter.input_channels).to(adapter.device)
    adapter, request = bind_targets(adapter, targets, tensor.shape[0])
    prepared = time.perf_counter()
    callable_target = request.score_function is not None
    if callable_target and explainer_class.classes_only_for(options):
        raise InvalidTarget(
            f"method '{method}' explains class indices only (it reads a class's classifier weights or compares class scores), "
            f"not {request.score_function.describe()}: give targets as None, an int or one int per input, or use a gradient or perturbation method"
        )
    with torch.inference_mode(False), collecting() as warnings, blaming_non_finite_scores(adapter, tensor, callable_target):
        result = explainer_class().attribute(adapter, tensor, request, resolved)
        request.check(result.scores, result.targets)
        check_attribution(result, tensor, callable_target)
    computed = time.perf_counter()

    def numpy(t: torch.Tensor | None, dtype: Any = "float32") -> Any:
        return None if t is None else t.detach().to("cpu").numpy().astype(dtype, copy=False)

    explanation = Explanation(
        maps=numpy(result.maps),
        targets=numpy(result.targets, "int64"),
        scores=numpy(result.scores),
        method=method,
        options={**resolved, **result.notes, **adapter.output_notes(), "targets": request.description, "backend": adapter.backend},
        attributions=numpy(result.attributions),
        layer_maps=numpy(result.layer_maps),
        warnings=warnings,
        extras={name: numpy(value) for name, value in result.extras.items()},
    )
    if photos is not None:  # photos made by vx.prepare_images: how to map back onto each
        explanation.options["preprocess"] = photos.records
        explanation.warnings = [*photos.notices(), *explanation.warnings]
    finished = time.perf_counter()
    explanation.timings = {
        "prepare": prepared - started,
        "compute": computed - prepared,
        "total": finished - started,
    }
    return explanation


@dataclass(frozen=True)
class MethodInfo:
    """A registered method as listed by ``vx.methods()``."""

    name: str
    requires: tuple[str, ...]
    plugin: str
    summary: str
    paper: str
    options: dict[str, Any]
    backends: tuple[str, ...]
    aliases: tuple[str, ...] = ()
    #: the method's ``quick_options``: what ``vexplain demo`` passes for a quick look ({} for most)
    quick_options: dict[str, Any] = field(default_factory=dict)
    #: the method explains class indices only (a callable or Target object is an InvalidTarget)
    class_targets_only: bool = False


def methods(supported_by: Any = None) -> list[MethodInfo]:
    """The registered explainers, sorted by name, with the backends each runs on.

    ``supported_by``: a model or adapter (anything ``adapt`` takes); then only the methods whose
    required capabilities it has (default None: every method)."""
    adapters = REGISTRY.adapters()
    adapter = None if supported_by is None else adapt(supported_by)
    return [
        _method_info(name, entry, adapters)
        for name, entry in sorted(REGISTRY.explainers().items())
        if adapter is None or all(adapter.supports(c) for c in entry.obj.requires)
    ]


def method_info(name: str) -> MethodInfo:
    """The registered method ``name`` (or an alias or other spelling of it: ``Grad-CAM``, ``ig``);
    an unknown name raises ``UnknownMethod`` with the closest names."""
    entry = REGISTRY.explainer(name)
    return _method_info(entry.name, entry, REGISTRY.adapters())


def resolve_options(name: str, options: Mapping[str, Any] | None = None, kind: str = "method") -> dict[str, Any]:
    """The options method (``kind="method"``) or metric (``kind="metric"``) ``name`` would run
    with: ``options`` validated and coerced, every default filled in. A bad name or value raises
    ``InvalidOption`` (an unknown method or metric: ``UnknownMethod`` / ``UnknownMetric``)."""
    if kind not in ("method", "metric"):
        raise InvalidOption(f"kind must be 'method' or 'metric'; got {kind!r}")
    entry = REGISTRY.explainer(name) if kind == "method" else REGISTRY.metric(name)
    return resolve_declared(entry.name, entry.obj.options, dict(options or {}), kind=kind)


def _method_info(name: str, entry: Any, adapters: Mapping[str, Any]) -> MethodInfo:
    cls = entry.obj
    backends = tuple(a.name for a in adapters.values() if set(cls.requires) <= set(getattr(a.obj, "capabilities", ())))
    return MethodInfo(
        name=name,
        requires=tuple(cls.requires),
        plugin=entry.plugin,
        summary=cls.summary,
        paper=cls.paper,
        options={k: o.default for k, o in cls.options.items()},
        backends=backends,
        aliases=tuple(cls.aliases),
        quick_options=dict(cls.quick_options),
        class_targets_only=cls.classes_only_for({}),
    )


def plugin_failures() -> list[tuple[str, str]]:
    """(plugin, error) for each third-party plugin that failed to load."""
    REGISTRY.manager  # noqa: B018 - loading records the failures
    return [(f.plugin, f.error) for f in REGISTRY.failures]
