"""The engine-independent steps of a shard: decode → preprocess → explain → rows.

Both engines run exactly these functions on exactly the same shards and batches, so their rows
agree bit for bit. The output schema (one row per image × method):

=========== ===================== =====================================================
column      type                  meaning
=========== ===================== =====================================================
image       string                the image's path relative to the source root
label       int64 (null if none)  the source's label
method      string                the method's name
target      int64                 the class explained
score       float32               the model's score for ``target`` on the image
map         list<float32>         the raw ``(H, W)`` map, row-major
map_shape   list<int32>           ``[H, W]``: ``np.asarray(map, np.float32).reshape(map_shape)``
options     string                JSON of ``exp.options`` (every option used, defaults filled)
warnings    list<string>          ``exp.warnings`` of the call that produced the row, then
                                  any the metrics raised
=========== ===================== =====================================================

A run with metrics (``evaluate_dataset``) adds one float64 column per metric value after these,
``"<metric>.<value>"`` (see ``vexplain.datasets.metrics``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from vexplain.core.api import explain
from vexplain.core.engine_choice import pinned
from vexplain.core.errors import InvalidInput, InvalidTarget
from vexplain.core.images import load_image, preprocess

from .metrics import evaluate_batch, input_boxes
from .plan import Plan, jsonable
from .sources import Item

COLUMNS = ("image", "label", "method", "target", "score", "map", "map_shape", "options", "warnings")


def schema(metric_columns: Sequence[str] = ()) -> Any:
    """The ``pyarrow.Schema`` of every shard (with float64 ``metric_columns`` after the rest)."""
    import pyarrow as pa

    return pa.schema([
        ("image", pa.string()),
        ("label", pa.int64()),
        ("method", pa.string()),
        ("target", pa.int64()),
        ("score", pa.float32()),
        ("map", pa.list_(pa.float32())),
        ("map_shape", pa.list_(pa.int32())),
        ("options", pa.string()),
        ("warnings", pa.list_(pa.string())),
        *((name, pa.float64()) for name in metric_columns),
    ])


@dataclass
class Decoded:
    """A shard's images ready for the model: ``inputs`` float32 ``(n, C, H, W)``; ``shown`` the
    resized uint8 RGB images when overlays are asked for, else None; ``shapes`` each image's
    original (H, W), to scale its box."""

    items: list[Item]
    inputs: np.ndarray
    shown: list[np.ndarray] | None
    shapes: list[tuple[int, int]] = field(default_factory=list)


def decode(items: Sequence[Item], plan: Plan) -> Decoded:
    """Read and preprocess ``items``; images of different sizes without ``size`` are an error."""
    inputs, shown, shapes = [], [], []
    for item in items:
        image = load_image(item.path)
        shapes.append((int(image.shape[0]), int(image.shape[1])))
        array = preprocess(image, plan.size, plan.mean, plan.std)
        if inputs and array.shape != inputs[0].shape:
            raise InvalidInput(
                f"image {item.name} is {array.shape[1]}x{array.shape[2]} but {items[0].name} is {inputs[0].shape[1]}x{inputs[0].shape[2]}; give size=(H, W) (--size) or a model with input_size metadata"
            )
        inputs.append(array)
        if plan.overlays:
            shown.append(_resized(image, array.shape[1:]))
    return Decoded(list(items), np.stack(inputs), shown if plan.overlays else None, shapes)


#: what ``exp.options`` records about how fast the engines were (probe times): kept out of the rows,
#: which must be the same whichever run, engine or worker explained an image
TIMING_OPTIONS = ("engine_probes", "engine_reason")


def explain_decoded(
    model: Any, decoded: Decoded, plan: Plan, pins: dict[str, dict[str, Any]] | None = None
) -> tuple[dict[str, list[Any]], dict[tuple[str, str], np.ndarray]]:
    """Every method on the decoded images in batches of ``plan.batch_size``, then every metric of
    ``plan.metrics`` on each method's maps: the rows as columns (ordered by image, then method)
    and, when overlays are asked for, {(image, method): RGB}.

    ``pins`` (one dict per run or per worker, filled here): a method whose ``engine="auto"`` chose
    by probing runs every later batch on the engine and batch size its first batch chose
    (``engine_choice.pinned``), so a run is not re-probed per batch and its batches agree."""
    pins = {} if pins is None else pins
    rows: dict[tuple[int, int], dict[str, Any]] = {}
    overlays: dict[tuple[str, str], np.ndarray] = {}
    targets = _targets(decoded.items, plan)
    boxes = input_boxes(decoded.items, decoded.shapes, decoded.inputs.shape[2:]) if plan.metrics else None
    for start in range(0, len(decoded.items), plan.batch_size):
        stop = min(start + plan.batch_size, len(decoded.items))
        batch = decoded.inputs[start:stop]
        wanted = targets if targets is None or isinstance(targets, int) else targets[start:stop]
        for m, method in enumerate(plan.methods):
            exp = explain(model, batch, method=method, targets=wanted, **pins.get(method, plan.options[method]))
            pins.setdefault(method, pinned(dict(plan.options[method]), exp.options))
            recorded = {key: value for key, value in exp.options.items() if key not in TIMING_OPTIONS}
            options = json.dumps(jsonable(recorded), sort_keys=True)
            values, metric_warnings = {}, []
            if plan.metrics:
                values, metric_warnings = evaluate_batch(
                    model, batch, exp, wanted, None if boxes is None else boxes[start:stop], plan.metrics, plan.metric_options
                )
            for i in range(stop - start):
                item = decoded.items[start + i]
                target = int(exp.targets[i])
                rows[(start + i, m)] = {
                    "image": item.name,
                    "label": item.label,
                    "method": method,
                    "target": target,
                    "score": float(exp.scores[i, target]),
                    "map": exp.maps[i].reshape(-1),
                    "map_shape": list(exp.maps[i].shape),
                    "options": options,
                    "warnings": list(exp.warnings) + metric_warnings,
                    **{column: float(value[i]) for column, value in values.items()},
                }
            if decoded.shown is not None:
                pictures = exp.overlay(decoded.shown[start:stop], colormap=plan.colormap, alpha=plan.alpha)
                for i in range(stop - start):
                    overlays[(decoded.items[start + i].name, method)] = pictures[i]
    ordered = [rows[key] for key in sorted(rows)]
    names = list(ordered[0]) if ordered else list(COLUMNS)
    return {name: [row[name] for row in ordered] for name in names}, overlays


def to_table(columns: dict[str, list[Any]]) -> Any:
    """Columns from ``explain_decoded`` as a ``pyarrow.Table`` with :func:`schema` (metric
    columns, those not in ``COLUMNS``, after the rest in their order)."""
    import pyarrow as pa

    extra = [name for name in columns if name not in COLUMNS]
    full = schema(extra)
    maps = columns["map"]
    flat = np.concatenate(maps).astype(np.float32, copy=False) if maps else np.zeros(0, np.float32)
    offsets = np.concatenate([[0], np.cumsum([len(m) for m in maps])]).astype(np.int32)
    arrays = {name: pa.array(columns[name], type=full.field(name).type) for name in full.names if name != "map"}
    arrays["map"] = pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, type=pa.float32()))
    return pa.table([arrays[name] for name in full.names], schema=full)


def map_of(row: dict[str, Any]) -> np.ndarray:
    """A row's ``map`` as float32 ``(H, W)``."""
    return np.asarray(row["map"], dtype=np.float32).reshape(tuple(row["map_shape"]))


def _targets(items: Sequence[Item], plan: Plan) -> int | list[int] | None:
    if plan.target != "label":
        return plan.target  # type: ignore[return-value]
    missing = [item.name for item in items if item.label is None]
    if missing:
        raise InvalidTarget(f"target='label' but image {missing[0]} has no label; give labels (class sub-folders or a manifest 'label' column) or another target")
    return [int(item.label) for item in items]  # type: ignore[arg-type]


def _resized(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    if image.shape[:2] == tuple(size):
        return image
    return cv2.resize(image, (int(size[1]), int(size[0])), interpolation=cv2.INTER_LINEAR)
