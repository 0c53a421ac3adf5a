"""Running methods × metrics over a data set, method by method, recording failures instead of stopping."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from vexplain import Evaluation, MetricInfo, ModelAdapter, evaluate, explain, method_info, metric_info, resolve_options
from vexplain.errors import InvalidOption, VexplainError, one_line
from vexplain.evaluation import MASKS, METHOD
from vexplain.progress import progress

from .evaluate_data import DataSet

#: the reference every method should beat: uniform noise maps, seeded
RANDOM_BASELINE = "random_baseline"


@dataclass
class MethodRun:
    """One method's maps on the data set and its evaluation by each metric."""

    name: str
    explanation: Any = None  # the Explanation (the random baseline's too: random maps, the model's scores)
    overlays: np.ndarray | None = None
    seconds: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None
    evaluations: dict[str, Evaluation] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    not_applicable: dict[str, str] = field(default_factory=dict)


def select(requested: str | None, available: list[str], kind: str) -> list[str]:
    """``--methods`` / ``--metrics``: a comma-separated list checked against the registry, or all."""
    if not requested:
        return available
    names = [n.strip() for n in requested.split(",") if n.strip()]
    if not names:
        raise InvalidOption(f"--{kind} needs at least one name")
    # unknown names raise, with a suggestion; an alias becomes the name it stands for
    return [(method_info if kind == "methods" else metric_info)(name).name for name in names]


def split_options(options: dict[str, Any], methods: list[str], metrics: list[str]) -> tuple[dict, dict]:
    """``{"NAME.KEY": value}`` → per-method and per-metric option dicts; NAME must be one of either."""
    per_method: dict[str, dict] = {m: {} for m in methods}
    per_metric: dict[str, dict] = {m: {} for m in metrics}
    for key, value in options.items():
        name, dot, option = key.partition(".")
        if not dot or not option:
            raise InvalidOption(f"--option takes NAME.KEY=VALUE with NAME a method or metric (e.g. deletion.steps=50); got {key!r}")
        target = per_method if name in per_method else per_metric if name in per_metric else None
        if target is None:
            raise InvalidOption(f"--option {key}: {name!r} is neither a selected method nor a selected metric")
        target[name][option] = value
    return per_method, per_metric


def check_options(method_options: dict, metric_options: dict) -> None:
    """Bad option names or values fail before any work (``InvalidOption``), not once per method."""
    for name, given in method_options.items():
        resolve_options(name, given)
    for name, given in metric_options.items():
        resolve_options(name, given, kind="metric")


def run_all(
    adapter: ModelAdapter, data: DataSet, methods: list[str], metrics: list[MetricInfo], method_options: dict, metric_options: dict, seed: int
) -> list[MethodRun]:
    """Explain the data set with each method (plus the random baseline) and evaluate every map set
    with every metric. A method or metric that fails is recorded with its one-line reason."""
    inputs = torch.from_numpy(data.inputs)
    runs = [MethodRun(name) for name in methods] + [MethodRun(RANDOM_BASELINE)]
    steps = [(run, metric) for run in runs for metric in (None, *metrics)]  # None: explain first
    for run, metric in progress(steps, total=len(steps), description="evaluate"):
        if run.skipped:
            continue
        try:
            if metric is None:
                _explain(run, adapter, inputs, data, method_options.get(run.name, {}), seed)
            else:
                reason = _not_applicable(run, metric, data)
                if reason:
                    run.not_applicable[metric.name] = reason
                    continue
                run.evaluations[metric.name] = evaluate(
                    adapter, inputs, run.explanation, metric=metric.name, masks=data.masks,
                    **metric_options.get(metric.name, {}),
                )
        except Exception as error:  # recorded and reported: one unfinished plugin must not sink the run
            reason = one_line(error, typed=not isinstance(error, VexplainError))
            if metric is None:
                run.skipped = reason
            else:
                run.failures[metric.name] = reason
    return runs


def _explain(run: MethodRun, adapter: ModelAdapter, inputs: torch.Tensor, data: DataSet, options: dict, seed: int) -> None:
    from vexplain import Explanation

    started = time.perf_counter()
    if run.name == RANDOM_BASELINE:
        maps = np.random.default_rng(seed).random((len(inputs), *inputs.shape[2:])).astype(np.float32)
        scores = adapter.forward(inputs).cpu().numpy()  # once: every metric then reuses them
        targets = data.labels if data.labels is not None else scores.argmax(1)
        exp = Explanation(maps=maps, targets=np.asarray(targets), scores=scores, method=RANDOM_BASELINE)
        run.options = {"targets": exp.targets, "used": {"seed": seed}}
    else:
        exp = explain(adapter, inputs, method=run.name, targets=data.labels, **options)
        run.options = {"targets": exp.targets, "used": exp.options}
    run.explanation = exp
    run.seconds = time.perf_counter() - started
    run.overlays = exp.overlay(data.images)


def _not_applicable(run: MethodRun, metric: MetricInfo, data: DataSet) -> str | None:
    if MASKS in metric.needs and data.masks is None:
        return "no ground truth (boxes or masks) for these images"
    if METHOD in metric.needs and run.name == RANDOM_BASELINE:
        return "re-explains with the method; the random baseline has none"
    return None
