"""The metric interface: how faithful or how well localised an explanation is, as numbers.

A metric declares its ``name``, the adapter capabilities it ``requires``, what else it ``needs``
(ground-truth ``"masks"``, or the ``"method"`` itself to re-explain), its ``options`` and its
``headline`` value (the one that ranks methods, with ``higher_is_better``), and implements
``evaluate(case, options) -> MetricResult``. Metrics are registered by plugins through the
``register_metrics`` hook, exactly like explainers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

import numpy as np
import torch

from .adapter import ModelAdapter
from .errors import UnknownMethod
from .options import Option

#: what a metric may need beyond the model, the inputs, the maps and the targets
MASKS = "masks"
METHOD = "method"
NEEDS = (MASKS, METHOD)


class UnknownMetric(UnknownMethod):
    """A metric name that no plugin registered."""


@dataclass
class EvaluationCase:
    """Everything a metric is handed, already checked.

    ``inputs`` float32 ``(N, C, H, W)`` on ``adapter.device``; ``maps`` float32 ``(N, H, W)`` raw
    (as the method returned them); ``targets`` int64 ``(N,)`` (the explained classes); ``masks``
    bool ``(N, H, W)`` ground truth (None unless given); ``method`` the explainer's name and
    ``method_options`` its options (None / empty when only maps were given); ``class_targets``
    whether ``targets`` are class indices (curves then record softmax probabilities) or columns of
    a target object's scores (``adapter`` is bound to it; curves record its scores as they are).
    """

    adapter: ModelAdapter
    inputs: torch.Tensor
    maps: torch.Tensor
    targets: torch.Tensor
    masks: torch.Tensor | None = None
    method: str | None = None
    method_options: dict[str, Any] = field(default_factory=dict)
    class_targets: bool = True


@dataclass
class MetricResult:
    """What a metric computes.

    ``values``: name → float64 ``(N,)``, one number per image (the metric's ``headline`` among
    them); ``curves``: name → float64 ``(N, T)`` (e.g. the deletion curve) with ``curve_x``: name
    → the ``T`` x positions (fractions, or layer names); ``notes``: choices made while running
    (engine, batch size), merged into the evaluation's options.
    """

    values: dict[str, np.ndarray]
    curves: dict[str, np.ndarray] = field(default_factory=dict)
    curve_x: dict[str, list] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)


class Metric:
    """Base of every metric. Subclasses set the class attributes and implement ``evaluate``."""

    name: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = ("forward",)
    needs: ClassVar[tuple[str, ...]] = ()
    summary: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    headline: ClassVar[str] = ""
    higher_is_better: ClassVar[bool] = True
    options: ClassVar[Mapping[str, Option]] = {}

    def evaluate(self, case: EvaluationCase, options: dict[str, Any]) -> MetricResult:
        raise NotImplementedError(f"{type(self).__name__}.evaluate")
