"""``report.html``: one self-contained page (images as base64 PNG, plots as inline SVG, no external
assets, nothing fetched) with the summary table, each metric's curves and table, and a gallery of
every image with each method's overlay and scores."""
from __future__ import annotations

import base64
import datetime
from html import escape
from pathlib import Path

import numpy as np

from vexplain import MetricInfo
from vexplain.files import write_text

from .evaluate_data import DataSet
from .evaluate_run import MethodRun
from .report_stats import axis_labels, best_rows, noise_notes
from .svg_plot import line_plot

STYLE = """
body { font-family: sans-serif; margin: 24px; color: #222; }
table { border-collapse: collapse; margin: 8px 0 20px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; font-size: 13px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
td.best { font-weight: bold; background: #e8f4e8; }
.gallery td { text-align: center; vertical-align: top; font-size: 11px; }
.gallery img { width: 128px; height: auto; image-rendering: pixelated; display: block; margin: 0 auto 2px; }
.plots { display: flex; flex-wrap: wrap; gap: 12px; }
.note { color: #666; font-size: 12px; }
"""

#: sets data-images-loaded on <html> to "all" once every <img> decoded (checked by the browser test)
SCRIPT = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (img) { return !(img.complete && img.naturalWidth > 0); });
  document.documentElement.setAttribute("data-images-total", String(images.length));
  document.documentElement.setAttribute("data-images-loaded", broken.length === 0 ? "all" : "missing " + broken.length);
});
"""


def png_data_uri(image: np.ndarray) -> str:
    """uint8 RGB ``(H, W, 3)`` as a ``data:image/png;base64,...`` URI."""
    import cv2

    ok, encoded = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("PNG encoding failed")
    return "data:image/png;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")


def _table(header: list[str], rows: list[list[str]], best: dict[int, set[int]] | None = None) -> str:
    best = best or {}
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for r, row in enumerate(rows):
        cells = "".join(f'<td{" class=best" if r in best.get(c, ()) else ""}>{escape(v)}</td>' for c, v in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _metric_section(metric: MetricInfo, runs: list[MethodRun]) -> str:
    evaluated = [(run.name, run.evaluations[metric.name]) for run in runs if metric.name in run.evaluations]
    parts = [f"<h2>{escape(metric.name)}</h2>", f"<p>{escape(metric.summary)}<br><span class=note>{escape(metric.paper)}</span></p>"]
    if not evaluated:
        reasons = sorted({run.failures.get(metric.name, "") or run.not_applicable.get(metric.name, "") for run in runs} - {""})
        return "".join(parts) + f"<p class=note>not computed: {escape('; '.join(reasons))}</p>"
    options = {k: v for k, v in evaluated[0][1].options.items() if k not in ("backend",)}
    parts.append(f"<p class=note>options: {escape(', '.join(f'{k}={v}' for k, v in options.items()))}</p>")
    values = list(evaluated[0][1].values)
    rows = [[name, *(f"{np.mean(ev.values[v]):.4f}" for v in values)] for name, ev in evaluated]
    parts.append(_table(["method", *values], rows))
    plots = []
    for curve in evaluated[0][1].curves:
        x = evaluated[0][1].curve_x.get(curve, [])
        numeric = all(isinstance(v, (int, float)) for v in x)
        series = {
            name: ((x if numeric else list(range(len(x)))), ev.curves[curve].mean(axis=0).tolist())
            for name, ev in evaluated if curve in ev.curves
        }
        x_label, y_label = axis_labels(curve, numeric)
        plots.append(line_plot(series, f"{curve} (mean over images)", x_label, y_label, tick_labels=None if numeric else [str(v) for v in x]))
    if plots:
        parts.append(f"<div class=plots>{''.join(plots)}</div>")
    return "".join(parts)


def _gallery(runs: list[MethodRun], metrics: list[MetricInfo], data: DataSet, class_names: list[str] | None) -> str:
    from vexplain.display import draw_box

    shown = [run for run in runs if run.overlays is not None]
    header = "<tr><th>input</th>" + "".join(f"<th>{escape(run.name)}</th>" for run in shown) + "</tr>"
    rows = []
    for i, name in enumerate(data.names):
        image = draw_box(data.images[i], data.boxes[i]) if data.boxes is not None else data.images[i]
        target = int(shown[0].options["targets"][i]) if shown else None
        label = class_names[target] if class_names and target is not None and target < len(class_names) else target
        cells = [f'<td><img alt="{escape(name)}" src="{png_data_uri(image)}">{escape(name)}<br>class {escape(str(label))}</td>']
        for run in shown:
            scores = "<br>".join(
                f"{escape(m.name)}: {run.evaluations[m.name].values[m.headline][i]:.3f}" for m in metrics if m.name in run.evaluations
            )
            cells.append(f'<td><img alt="{escape(run.name)} on {escape(name)}" src="{png_data_uri(run.overlays[i])}">{scores}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<h2>Images</h2><table class=gallery>{header}{''.join(rows)}</table>"


def write_report(
    path: Path, runs: list[MethodRun], metrics: list[MetricInfo], data: DataSet, model: str, summary: tuple[list[str], list[list[str]]], class_names: list[str] | None
) -> None:
    header, rows = summary
    failures = [f"{run.name}: {run.skipped}" for run in runs if run.skipped]
    failures += [f"{run.name} × {metric}: failed: {reason}" for run in runs for metric, reason in run.failures.items()]
    failures += [f"{run.name} × {metric}: not applicable: {reason}" for run in runs for metric, reason in run.not_applicable.items()]
    notes = "".join(f"<li>{escape(f)}</li>" for f in failures)
    noise = "".join(f"<li>{escape(line)}</li>" for line in noise_notes(runs, metrics))
    body = [
        "<h1>vexplain evaluation</h1>",
        f"<p>model <b>{escape(model)}</b> on {len(data.names)} images of {escape(data.name)}; "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC. ↑ higher is better, ↓ lower is better; "
        "the best method per column highlighted, tied methods alike (equal to the 3 decimals shown); "
        "rows in parentheses are baselines reported by a metric.</p>",
        _table(header, rows, best_rows(runs, metrics)),
        f"<div class=noise><p class=note>Within noise of the random baseline:</p><ul>{noise}</ul></div>" if noise else "",
        f"<details><summary>not computed ({len(failures)})</summary><ul>{notes}</ul></details>" if failures else "",
        *(_metric_section(metric, runs) for metric in metrics),
        _gallery(runs, metrics, data, class_names),
    ]
    page = (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>vexplain evaluation</title>"
        f"<style>{STYLE}</style><script>{SCRIPT}</script></head><body>{''.join(body)}</body></html>"
    )
    write_text(path, page)
