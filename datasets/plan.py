"""What a data-set run computes, independent of the engine: the plan, its spec, the fingerprint."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from vexplain.core.errors import InvalidOption, InvalidTarget, ModelLoadError
from vexplain.core.options import resolve_options
from vexplain.core.registry import REGISTRY


@dataclass(frozen=True)
class Plan:
    """Everything the workers need besides the model and the images.

    ``methods``: method names, each run on every image; ``options``: per method, the options given
    (validated against the method's declaration); ``target``: None (each image's top class), an
    int (that class for every image) or ``"label"`` (the source's label per image); ``size``,
    ``mean``, ``std``: preprocessing (see ``core/images.preprocess``); ``batch_size``: images per
    ``vx.explain`` call (a shard is cut into batches the same way on every engine, so engines
    agree bit for bit); ``overlays``: also keep the resized images to write overlay PNGs;
    ``metrics``: metric names scored on every method's maps (``evaluate_dataset``) and
    ``metric_options`` per metric (checked by ``datasets.metrics.check_metrics``).
    """

    methods: tuple[str, ...]
    options: Mapping[str, Mapping[str, Any]]
    target: int | str | None
    size: tuple[int, int] | None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    batch_size: int = 16
    overlays: bool = False
    colormap: str = "jet"
    alpha: float = 0.5
    extra: Mapping[str, Any] = field(default_factory=dict)
    metrics: tuple[str, ...] = ()
    metric_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def spec(self, fingerprint: str) -> dict[str, Any]:
        """The JSON-able description a resumed run must match (batch and shard sizes are left out:
        they do not change results; metrics appear only in a run that has them)."""
        spec = {
            "model": fingerprint,
            "methods": list(self.methods),
            "options": jsonable({m: dict(self.options[m]) for m in self.methods}),
            "target": self.target,
            "preprocessing": jsonable({"size": self.size, "mean": self.mean, "std": self.std}),
        }
        if self.metrics:
            spec["metrics"] = jsonable({m: dict(self.metric_options.get(m, {})) for m in self.metrics})
        return spec


def make_plan(
    methods: str | Sequence[str],
    options: Mapping[str, Any],
    method_options: Mapping[str, Mapping[str, Any]] | None,
    target: Any,
    metadata: Mapping[str, Any],
    size: Any = None,
    mean: Any = None,
    std: Any = None,
    batch_size: int = 16,
    overlays: bool = False,
) -> Plan:
    """A validated plan. Shared ``options`` go to every method that declares them (an option no
    method declares is an ``InvalidOption``); ``method_options`` maps a method to its own options.
    Preprocessing defaults come from the model's metadata (``input_size``, ``mean``, ``std``)."""
    names = (methods,) if isinstance(methods, str) else tuple(methods)
    if not names or len(set(names)) != len(names):
        raise InvalidOption(f"methods must be one or more distinct method names; got {list(names)}")
    declared = {name: REGISTRY.explainer(name).obj.options for name in names}
    unknown = sorted(k for k in options if not any(k in d for d in declared.values()))
    if unknown:
        raise InvalidOption(f"option(s) {', '.join(unknown)} belong to none of the methods {', '.join(names)}; see `vexplain methods`")
    extra = dict(method_options or {})
    stray = sorted(set(extra) - set(names))
    if stray:
        raise InvalidOption(f"method_options names {', '.join(stray)}, which are not among the methods {', '.join(names)}")
    per_method = {}
    for name in names:
        given = {k: v for k, v in options.items() if k in declared[name]}
        given.update(extra.get(name, {}))
        resolve_options(name, declared[name], given)
        per_method[name] = given
    if not (target is None or target == "label" or (isinstance(target, (int, np.integer)) and not isinstance(target, bool) and target >= 0)):
        raise InvalidTarget(f"a data-set run's target is None (top class), a class index >= 0 or 'label' (the source's labels); got {target!r}")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise InvalidOption(f"batch_size must be a positive int; got {batch_size!r}")
    chosen_size = size if size is not None else metadata.get("input_size")
    return Plan(
        methods=names,
        options=per_method,
        target=int(target) if isinstance(target, (int, np.integer)) else target,
        size=None if chosen_size is None else (int(chosen_size[0]), int(chosen_size[1])),
        mean=tuple(float(v) for v in (mean or metadata.get("mean") or (0.0, 0.0, 0.0))),  # type: ignore[arg-type]
        std=tuple(float(v) for v in (std or metadata.get("std") or (1.0, 1.0, 1.0))),  # type: ignore[arg-type]
        batch_size=batch_size,
        overlays=overlays,
    )


def fingerprint(model: Any, weights: str | None = None) -> str:
    """A sha256 naming the model's weights: of the file for a path, of the factory name plus the
    weights file for ``pkg.module:factory``, of every parameter and buffer for a PyTorch model, of
    the serialized graph for an ONNX model. Anything else raises ``ModelLoadError``."""
    digest = hashlib.sha256()
    if isinstance(model, (str, Path)):
        text = str(model)
        if Path(text).is_file():
            _hash_file(digest, Path(text))
        else:
            digest.update(text.encode())
        if weights is not None:
            _hash_file(digest, Path(weights))
        return digest.hexdigest()
    inner = getattr(model, "model", model)
    if hasattr(inner, "state_dict"):
        digest.update(type(inner).__qualname__.encode())
        for name, tensor in inner.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()
    if hasattr(inner, "SerializeToString"):
        digest.update(inner.SerializeToString())
        return digest.hexdigest()
    raise ModelLoadError(f"cannot fingerprint a {type(model).__name__} for resume; give a model path, 'pkg.module:factory' with weights, an nn.Module or an ONNX model")


def _hash_file(digest: Any, path: Path) -> None:
    try:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as error:
        raise ModelLoadError(f"cannot read {path}: {error.strerror}") from None


def jsonable(value: Any) -> Any:
    """``value`` with tuples as lists, numpy scalars and arrays as Python values, and anything else
    JSON cannot hold as its ``repr`` (so options always serialise)."""
    return json.loads(json.dumps(value, default=_plain, sort_keys=True))


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return repr(value)
