"""Occlusion sensitivity (Zeiler & Fergus, 2014)."""
from __future__ import annotations

import functools
import math
from typing import Any

import torch

from vexplain.core.adapter import FORWARD, BoxScorer, ModelAdapter
from vexplain.core.engine_choice import auto_box_engine, engine_option
from vexplain.core.errors import InvalidOption
from vexplain.core.explainer import Attribution, Explainer
from vexplain.core.hookspecs import hookimpl
from vexplain.core.options import Option, choice, int_pair, integer, number, optional
from vexplain.core.perturbation import batch_size_for, box_sums, default_memory_mb, window_starts
from vexplain.core.progress import progress_counter
from vexplain.core.targets import TargetRequest

from .occlusion_drilldown import drilldown_selection, interpolate_grid

#: images whose clean forward passes run as one batch (their activations are kept meanwhile)
IMAGES_PER_CLEAN_PASS = 8


def _window() -> Any:
    """``"patch"`` or a window size (``int_pair``)."""
    pair = int_pair()

    def coerce(value: Any) -> Any:
        if value == "patch":
            return value
        try:
            return pair(value)
        except ValueError:
            raise ValueError("must be 'patch', an int >= 1 or a pair (h, w) of such ints") from None

    return coerce


class Occlusion(Explainer):
    """Δ = y_t(x) − y_t(x with a window set to ``baseline``), averaged over the windows covering
    each pixel (all channels are occluded together).

    Defaults: ``window`` = min(H, W) // 8 (at least 1) square, ``stride`` = window // 2 (at least
    1); ``window="patch"`` occludes one patch of a vision transformer at a time: window and (unless
    given) stride = the patch size, the input size over the first token grid the model computes
    (the patch embedding's stride for a plain ViT, Swin or ConvNeXt; for a hybrid, whose embedding
    runs on a CNN's map, the CNN's stride times it), recorded as ``exp.options["window"]`` with
    ``window_from="patch"``; a model without a token grid or patch embedding is an ``InvalidOption``. ``baseline`` = 0.0 (the mean after normalisation), ``batch_size`` derived from
    ``memory_mb`` (default 1024 on the CPU; on a GPU a quarter of its free memory, at most 16 GB),
    ``engine`` = "auto", ``precision`` = "fp32". Windows run every ``stride`` pixels plus one flush
    with the far edge when the stride does not reach it, so every pixel is covered; where (H − h)
    and (W − w) are multiples of the stride this equals Captum's ``Occlusion`` with window
    (C, h, w) and strides (C, sh, sw). A stride (or drill-down ``coarse_stride``) larger than the
    window would leave pixels no window covers: that is an ``InvalidOption`` naming both, on every
    engine and backend, never a map with holes.

    Engines (all exact): ``incremental`` recomputes, for each window, only the part of each feature
    map the window can change (PyTorch models built from common layers; others fall back to batched
    full inference and say why in ``exp.options["engine_fallback"]``); ``onnx`` and ``torch`` run
    batched full inference. ``auto`` times short probes of every exact engine the adapter declares
    (and batch sizes up to the memory-derived one) once per model, input shape and window, and
    keeps the fastest (``core/engine_choice.py``); small runs, and approximate settings, take the
    rule: ``incremental`` for PyTorch models (on a GPU only for images of at least 128×128, where
    it pays), the backend's own batched engine otherwise. ``exp.options`` records ``engine``,
    ``engine_reason`` and ``engine_probes`` (seconds per window, per engine and batch size).

    ``mode="drilldown"`` is approximate (Krypton's adaptive drill-down): windows every
    ``coarse_stride`` (default: twice ``stride``, at most the window) everywhere, then every
    ``stride`` only where the coarse map is in the top ``top_fraction`` (default 0.1) by magnitude;
    the drop of each window not evaluated is interpolated bilinearly from the coarse windows (when
    the coarse grid already holds every fine window, the map is exact). It pays at strides well below
    the window (on the demo set at window 8, stride 1: SSIM ≥ 0.94 per image against the exact map,
    see benchmarks/README.md). ``field_limit`` (approximate, incremental engine) cuts each layer's
    recomputed region to that fraction of its map. ``precision`` "bf16" or "fp16" (approximate,
    PyTorch models, engines ``incremental`` and ``torch``) runs convolutions in that type under
    autocast; ``exp.options["precision_error"]`` is the largest change it makes to any unoccluded
    score. ``exp.options["approximate"]`` is True when any of these is used.
    """

    name = "occlusion"
    requires = (FORWARD,)
    summary = "drop in the class score when a window of the image is set to a baseline, averaged over covering windows"
    paper = "Zeiler & Fergus, Visualizing and Understanding Convolutional Networks, ECCV 2014"
    options = {
        "window": Option(None, optional(_window()), "window size k or (h, w), or 'patch' (the model's patch size, stride too); default min(H, W) // 8"),
        "stride": Option(None, optional(int_pair()), "step k or (sh, sw); default window // 2"),
        "baseline": Option(0.0, number(), "value written into the occluded window (in preprocessed units)"),
        "batch_size": Option(None, optional(integer(1)), "occluded images per forward pass; default from memory_mb"),
        "memory_mb": Option(None, optional(number(above=0)), "memory budget from which batch_size is derived; default 1024 (CPU) or 1/4 of free GPU memory"),
        "engine": engine_option("occlusion", "which exact engine computes the occluded scores; 'auto' times them (core/engine_choice.py)"),
        "mode": Option("exact", choice("exact", "drilldown"), "'drilldown': coarse everywhere, fine where it matters (approximate)"),
        "coarse_stride": Option(None, optional(int_pair()), "drilldown: stride of the coarse pass, at most the window; default twice stride, at most the window"),
        "top_fraction": Option(0.1, number(above=0, maximum=1), "drilldown: fraction of fine windows evaluated exactly, by coarse magnitude"),
        "field_limit": Option(None, optional(number(above=0, maximum=1)), "approximate: cut each layer's changed region to this fraction of its map (incremental engine)"),
        "precision": Option("fp32", choice("fp32", "bf16", "fp16"), "approximate below fp32: convolutions in bf16/fp16 (PyTorch models)"),
    }

    def attribute(self, adapter: ModelAdapter, inputs: torch.Tensor, targets: TargetRequest, options: dict[str, Any]) -> Attribution:
        height, width = inputs.shape[2:]
        window = _patch_window(adapter, inputs) if options["window"] == "patch" else options["window"] or (max(1, min(height, width) // 8),) * 2
        stride = options["stride"] or (window if options["window"] == "patch" else (max(1, window[0] // 2), max(1, window[1] // 2)))
        if window[0] > height or window[1] > width:
            raise InvalidOption(f"occlusion window {window} is larger than the image ({height}, {width}); use a window at most that size")
        _check_covering("stride", stride, window)
        device = inputs.device
        memory_mb = options["memory_mb"] or default_memory_mb(adapter.device)
        batch_size = options["batch_size"] or batch_size_for(tuple(inputs.shape[1:]), memory_mb, device=adapter.device)
        fine = _grid(height, width, window, stride, device)
        drilldown = options["mode"] == "drilldown"
        coarse_stride = options["coarse_stride"] or (min(2 * stride[0], window[0]), min(2 * stride[1], window[1]))
        if drilldown:
            _check_covering("coarse_stride", coarse_stride, window)
        coarse = _grid(height, width, window, coarse_stride, device) if drilldown else None

        fine_tops, fine_lefts = fine["tops"], fine["lefts"]
        engine, batch_size, choice_notes = auto_box_engine(
            adapter, self.name, inputs, window, stride, options, fine["cpu_tops"], fine["cpu_lefts"], batch_size
        )
        known = _known(coarse, fine) if drilldown else None
        scores, chosen, evaluated, precision_errors = [], [], [], []
        drops = torch.zeros((len(inputs), len(fine_tops)), device=device)
        per_image = len(coarse["tops"]) + math.ceil(options["top_fraction"] * len(fine_tops)) if drilldown else len(fine_tops)
        with progress_counter(len(inputs) * per_image, "occlusion", unit="window") as bar:
            for first in range(0, len(inputs), IMAGES_PER_CLEAN_PASS):  # each scorer holds its image's activations
                chunk = inputs[first : first + IMAGES_PER_CLEAN_PASS]
                chunk_scorers = adapter.box_scorers(
                    chunk, window, options["baseline"], engine, options["field_limit"], options["precision"]
                )
                for n, scorer in enumerate(chunk_scorers, start=first):
                    if n == 0:
                        call_notes = dict(scorer.notes)  # as the call found things (e.g. whether an export was cached)
                    precision_errors.append(scorer.notes.get("precision_error", 0.0))
                    scores.append(scorer.base.to(device))
                    chosen.append(targets.select(scores[-1][None], n)[0])
                    drop_of = functools.partial(_drops, scorer, int(chosen[-1]), batch_size, bar)
                    if not drilldown:
                        drops[n] = drop_of(fine["cpu_tops"], fine["cpu_lefts"])
                        evaluated.append(len(fine_tops))
                        continue
                    coarse_drops = drop_of(coarse["cpu_tops"], coarse["cpu_lefts"])
                    coarse_map = box_sums(coarse_drops[None], coarse["tops"], coarse["lefts"], (height, width), window)[0] / coarse["coverage"]
                    drops[n] = interpolate_grid(coarse_drops, coarse, fine)
                    selected = drilldown_selection(coarse_map, fine, window, options["top_fraction"], known=known)
                    on_cpu = selected.cpu()
                    drops[n, selected] = drop_of(fine["cpu_tops"][on_cpu], fine["cpu_lefts"][on_cpu])
                    evaluated.append(len(coarse["tops"]) + len(selected))
        maps = box_sums(drops, fine_tops, fine_lefts, (height, width), window) / fine["coverage"]
        notes = {
            "window": window,
            "stride": stride,
            "batch_size": batch_size,
            "memory_mb": memory_mb,
            "engine": scorer.engine,
            "windows": len(fine_tops),
            "mode": options["mode"],
            **scorer.notes,
            **call_notes,
            **choice_notes,
            "approximate": drilldown or "field_limit" in scorer.notes or options["precision"] != "fp32",
        }
        if options["precision"] != "fp32":
            notes["precision_error"] = max(precision_errors)
        if options["window"] == "patch":
            notes["window_from"] = "patch"
        if drilldown:
            notes.update(coarse_stride=coarse_stride, windows_evaluated=evaluated)
        return Attribution(maps=maps, scores=torch.stack(scores), targets=torch.stack(chosen), notes=notes)


def _patch_window(adapter: ModelAdapter, inputs: torch.Tensor) -> tuple[int, int]:
    """The model's patch size for ``window="patch"``: the input over its first token grid (one traced
    sample), else its patch embedding's stride."""
    height, width = inputs.shape[2:]
    grids = [notes["grid"] for _, notes in adapter.layer_grids(inputs[:1]).values() if notes.get("grid")]
    patch = (math.ceil(height / grids[0][0]), math.ceil(width / grids[0][1])) if grids else adapter.patch_stride()
    if patch is None:
        raise InvalidOption(
            f"occlusion window='patch' needs a model with a patch embedding (a Conv2d whose stride equals its kernel, > 1), "
            f"and {adapter.describe()} has none; give window=k or (h, w)"
        )
    return patch


def _check_covering(name: str, stride: tuple[int, int], window: tuple[int, int]) -> None:
    """Windows ``stride`` apart must leave no pixel uncovered (a pixel no window covers has no
    drop to average: 0/0); refuse rather than widen the windows the user asked for."""
    if stride[0] > window[0] or stride[1] > window[1]:
        raise InvalidOption(
            f"occlusion {name} {stride} is larger than the window {window}, so pixels between windows would have no value; "
            f"use {name} at most the window, e.g. {name}={window}, or window={(max(stride[0], window[0]), max(stride[1], window[1]))}"
        )


def _drops(scorer: BoxScorer, target: int, batch_size: int, bar: Any, tops: torch.Tensor, lefts: torch.Tensor) -> torch.Tensor:
    """y_t(x) − y_t(x with each box set to the baseline), ``batch_size`` boxes (``tops``/``lefts``
    on the CPU) per call, on the scores' device."""
    parts = [scorer.base.new_zeros((0,))]  # no boxes (a drill-down whose coarse grid held every fine window): no drops
    for start in range(0, len(tops), batch_size):
        parts.append(scorer.base[target] - scorer.run(tops[start : start + batch_size], lefts[start : start + batch_size])[:, target])
        bar.update(len(parts[-1]))
    return torch.cat(parts)


def _grid(height: int, width: int, window: tuple[int, int], stride: tuple[int, int], device: torch.device) -> dict[str, Any]:
    """Window corners every ``stride`` (plus the flush ones) on ``device`` and, for the box scorers,
    on the CPU; and how many windows cover each pixel."""
    rows, cols = window_starts(height, window[0], stride[0]), window_starts(width, window[1], stride[1])
    cpu_tops, cpu_lefts = (corner.reshape(-1) for corner in torch.meshgrid(torch.tensor(rows), torch.tensor(cols), indexing="ij"))
    tops, lefts = cpu_tops.to(device), cpu_lefts.to(device)
    ones = torch.ones((1, len(tops)), device=device)
    coverage = box_sums(ones, tops, lefts, (height, width), window)[0]
    return {"rows": rows, "cols": cols, "tops": tops, "lefts": lefts, "cpu_tops": cpu_tops, "cpu_lefts": cpu_lefts, "coverage": coverage}


def _known(coarse: dict[str, Any], fine: dict[str, Any]) -> torch.Tensor:
    """Fine windows that are also coarse windows (their interpolated drop is exact)."""
    rows = torch.tensor([r in set(coarse["rows"]) for r in fine["rows"]])
    cols = torch.tensor([c in set(coarse["cols"]) for c in fine["cols"]])
    return (rows[:, None] & cols[None, :]).reshape(-1).to(fine["tops"].device)


@hookimpl
def register_explainers(register) -> None:
    register(Occlusion)
