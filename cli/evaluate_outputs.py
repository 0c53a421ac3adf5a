"""``vexplain evaluate``'s tables and files: the summary table (markdown), results.csv, results.json."""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from vexplain import MetricInfo
from vexplain.files import write_text

from .evaluate_data import DataSet
from .evaluate_run import RANDOM_BASELINE, MethodRun

BASELINE_PREFIX = "baseline_"


def column_title(metric: MetricInfo) -> str:
    return f"{metric.name} {metric.headline} {'↑' if metric.higher_is_better else '↓'}"


def summary_rows(runs: list[MethodRun], metrics: list[MetricInfo]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the summary: one row per method (headline means; '-' where a metric did
    not apply, 'failed' where it failed), then one row per baseline value a metric reports
    (e.g. pointing_game's centre point)."""
    header = ["method", *(column_title(m) for m in metrics), "explain s"]
    rows = []
    for run in runs:
        if run.skipped:
            rows.append([run.name, *("skipped" for _ in metrics), "-"])
            continue
        cells = [run.name]
        for metric in metrics:
            if metric.name in run.evaluations:
                cells.append(f"{run.evaluations[metric.name].summary()[metric.headline]:.3f}")
            else:
                cells.append("failed" if metric.name in run.failures else "-")
        cells.append(f"{run.seconds:.2f}")
        rows.append(cells)
    for metric in metrics:
        for value in baseline_values(runs, metric):
            row = [f"({metric.name} {value})"] + ["" for _ in metrics] + [""]
            row[1 + metrics.index(metric)] = f"{baseline_mean(runs, metric, value):.3f}"
            rows.append(row)
    return header, rows


def baseline_values(runs: list[MethodRun], metric: MetricInfo) -> list[str]:
    for run in runs:
        if metric.name in run.evaluations:
            return [k for k in run.evaluations[metric.name].values if k.startswith(BASELINE_PREFIX)]
    return []


def baseline_mean(runs: list[MethodRun], metric: MetricInfo, value: str) -> float:
    for run in runs:
        if metric.name in run.evaluations:
            return float(np.mean(run.evaluations[metric.name].values[value]))
    return math.nan


def write_csv(path: Path, runs: list[MethodRun], data: DataSet) -> None:
    """One row per image, method, metric and value: image, target, method, metric, value, score."""
    handle = io.StringIO(newline="")
    writer = csv.writer(handle)
    writer.writerow(["image", "target", "method", "metric", "value", "score"])
    for run in runs:
        for metric, evaluation in run.evaluations.items():
            for value, scores in evaluation.values.items():
                for i, score in enumerate(scores):
                    writer.writerow([data.names[i], int(evaluation.targets[i]), run.name, metric, value, repr(float(score))])
    write_text(path, handle.getvalue())


def write_json(path: Path, runs: list[MethodRun], metrics: list[MetricInfo], data: DataSet, model: str) -> None:
    """Everything: the setup, each method's options, time, failures and warnings, each metric's options,
    per-image values and mean curves."""
    document: dict[str, Any] = {
        "model": model,
        "data": data.name,
        "images": data.names,
        "baseline": RANDOM_BASELINE,
        "metrics": {m.name: {"headline": m.headline, "higher_is_better": m.higher_is_better, "summary": m.summary, "paper": m.paper} for m in metrics},
        "methods": {},
    }
    for run in runs:
        entry: dict[str, Any] = {"skipped": run.skipped} if run.skipped else {
            "seconds": run.seconds,
            "options": _jsonable(run.options.get("used", {})),
            "targets": [int(t) for t in run.options["targets"]],
            "failures": run.failures,
            "not_applicable": run.not_applicable,
            "warnings": list(run.explanation.warnings) if run.explanation is not None else [],
            "results": {},
        }
        for name, evaluation in run.evaluations.items():
            entry["results"][name] = {
                "mean": evaluation.summary(),
                "per_image": {k: v.tolist() for k, v in evaluation.values.items()},
                "options": _jsonable(evaluation.options),
                "mean_curves": {k: {"x": _jsonable(evaluation.curve_x.get(k)), "y": c.mean(axis=0).tolist()} for k, c in evaluation.curves.items()},
                "seconds": evaluation.timings["total"],
            }
        document["methods"][run.name] = entry
    write_text(path, json.dumps(document, indent=1, allow_nan=True))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
