"""Metrics in a data-set run: each method's maps scored by ``vx.evaluate`` batch by batch, the
values written as columns of the same rows, and the summary over the whole dataset.

A metric value becomes the float64 column ``"<metric>.<value>"`` (e.g. ``deletion.auc``,
``pointing_game.hit``, ``pointing_game.baseline_hit``). Ground truth for metrics that need masks
(``pointing_game``) is the source's ``box`` (pixels of the original image), scaled to the input
size as ``vexplain evaluate`` scales its boxes: x0, y0 floored, x1, y1 ceiled, clipped.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from vexplain.core.errors import InvalidInput, InvalidOption
from vexplain.core.evaluation import evaluate
from vexplain.core.explanation import Explanation
from vexplain.core.metric import MASKS
from vexplain.core.options import resolve_options
from vexplain.core.registry import REGISTRY

from .sources import Item
from .store import SUMMARY


def check_metrics(
    metrics: str | Sequence[str] | None, options: Mapping[str, Mapping[str, Any]] | None, items: Sequence[Item]
) -> tuple[tuple[str, ...], dict[str, dict[str, Any]]]:
    """The metric names (aliases resolved; None: every registered metric, less those that need
    ground truth when an image has no box) and their validated options. A metric that needs masks
    with an image without a box is an ``InvalidInput`` naming the image."""
    boxed = all(item.box is not None for item in items)
    if metrics is None:
        names = tuple(n for n, e in sorted(REGISTRY.metrics().items()) if boxed or MASKS not in e.obj.needs)
    else:
        given = (metrics,) if isinstance(metrics, str) else tuple(metrics)
        names = tuple(REGISTRY.metric(n).name for n in given)
    if not names or len(set(names)) != len(names):
        raise InvalidOption(f"metrics must be one or more distinct metric names; got {list(names)}")
    extra = dict(options or {})
    stray = sorted(set(extra) - set(names))
    if stray:
        raise InvalidOption(f"metric_options names {', '.join(stray)}, which are not among the metrics {', '.join(names)}")
    for name in names:
        if MASKS in REGISTRY.metric(name).obj.needs and not boxed:
            missing = next(item.name for item in items if item.box is None)
            raise InvalidInput(f"metric '{name}' needs a box for every image; {missing} has none (give a manifest with a 'box' column: x0 y0 x1 y1)")
        resolve_options(name, REGISTRY.metric(name).obj.options, dict(extra.get(name, {})), kind="metric")
    return names, {name: dict(extra.get(name, {})) for name in names}


def input_boxes(items: Sequence[Item], shapes: Sequence[tuple[int, int]], size: tuple[int, int]) -> np.ndarray | None:
    """Each item's box scaled from its original ``shapes[i]`` (H, W) to the input ``size``,
    int64 ``(n, 4)``; None when an item has no box."""
    if any(item.box is None for item in items):
        return None
    height, width = size
    boxes = []
    for item, (h, w) in zip(items, shapes):
        x0, y0, x1, y1 = item.box  # type: ignore[misc]
        sy, sx = height / h, width / w
        boxes.append([max(0, math.floor(x0 * sx)), max(0, math.floor(y0 * sy)), min(width, math.ceil(x1 * sx)), min(height, math.ceil(y1 * sy))])
    return np.asarray(boxes, dtype=np.int64)


def evaluate_batch(
    model: Any, batch: np.ndarray, exp: Explanation, targets: Any, boxes: np.ndarray | None,
    metrics: Sequence[str], options: Mapping[str, Mapping[str, Any]],
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Every metric on one batch's explanation: {column: float64 (n,)} and the metrics' warnings."""
    columns: dict[str, np.ndarray] = {}
    warnings: list[str] = []
    for name in metrics:
        masks = boxes if MASKS in REGISTRY.metric(name).obj.needs else None
        result = evaluate(model, batch, exp, metric=name, targets=targets, masks=masks, **options[name])
        for value in sorted(result.values):
            columns[f"{name}.{value}"] = result.values[value]
        warnings += [line for line in result.warnings if line not in exp.warnings and line not in warnings]
    return columns, warnings


def metric_columns(names: Sequence[str]) -> list[str]:
    """The metric columns among a table's column names (those with a '.'), in order."""
    return [name for name in names if "." in name]


def summarize(out: str | os.PathLike) -> dict[str, dict[str, dict[str, float]]]:
    """Mean and standard deviation (population, ddof=0) of every metric column per method over all
    committed rows of ``out``, {method: {column: {"mean", "std", "n"}}}, written to
    ``out/_summary.json``; NaN values (a metric undefined on an image) are left out of both."""
    import pyarrow.parquet as pq

    folder = Path(out)
    columns = metric_columns(pq.read_schema(next(folder.glob("part-*.parquet"))).names)
    table = pq.read_table(folder, columns=["method", *columns])
    methods = table.column("method").to_numpy(zero_copy_only=False)
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for method in sorted(set(methods.tolist())):
        chosen = methods == method
        summary[method] = {}
        for column in columns:
            values = table.column(column).to_numpy(zero_copy_only=False)[chosen].astype(np.float64)
            values = values[~np.isnan(values)]
            summary[method][column] = {
                "mean": float(values.mean()) if len(values) else math.nan,
                "std": float(values.std()) if len(values) else math.nan,
                "n": int(len(values)),
            }
    temporary = folder / f".{SUMMARY}.tmp"
    temporary.write_text(json.dumps(summary, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(temporary, folder / SUMMARY)
    return summary


def summary_table(summary: Mapping[str, Mapping[str, Mapping[str, float]]]) -> tuple[list[str], list[list[str]]]:
    """Header and rows (one per method, ``mean ± std`` per metric column) for a markdown table."""
    columns = sorted({c for entry in summary.values() for c in entry})
    rows = [[method, *(f"{entry[c]['mean']:.3f} ± {entry[c]['std']:.3f}" if c in entry else "-" for c in columns)] for method, entry in summary.items()]
    return ["method", *columns], rows
