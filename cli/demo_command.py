"""``vexplain demo``: the shipped model on generated scenes, explained by every registered method."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vexplain import explain, methods
from vexplain.errors import VexplainError
from vexplain.files import output_folder, write_bytes, write_png, write_text
from vexplain.progress import progress, progress_bars

from .evaluate_run import select

FIGURE_ROWS = 8


def add_parser(subcommands: Any) -> None:
    parser = subcommands.add_parser(
        "demo",
        help="explain generated scenes with the shipped model and every method",
        description=(
            "Generate scenes (a shape on a cluttered background, its box known), explain the shipped demo CNN's "
            "decision with every registered method, write a side-by-side figure, and report for each method how "
            "often its map's peak falls inside the object's box."
        ),
    )
    parser.add_argument("--out", "-o", default="vexplain-demo", help="output folder (default vexplain-demo)")
    parser.add_argument("--scenes", type=int, default=32, help="number of generated scenes (default 32)")
    parser.add_argument("--seed", type=int, default=2026, help="seed of the generated scenes (default 2026)")
    parser.add_argument("--methods", help="comma-separated methods (default: every registered method)")
    parser.set_defaults(run=run)


def peak_inside(maps: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per map: whether its argmax (first on ties) lies in the box (x0, y0, x1, y1; end-exclusive), and the peaks."""
    from vexplain.evaluation import as_masks, peaks, within

    points = peaks(torch.from_numpy(np.ascontiguousarray(maps)))
    hits = within(points, as_masks(boxes, len(maps), tuple(maps.shape[1:])), tolerance=0)
    return hits.numpy(), points.numpy()


def run(args: argparse.Namespace) -> int:
    from vexplain.errors import InvalidOption
    from vexplain.demo.model import demo_adapter, load_metadata, preprocess
    from vexplain.demo.scenes import generate_dataset

    if args.scenes < 1:
        raise InvalidOption(f"--scenes must be at least 1; got {args.scenes}")
    meta = load_metadata()
    adapter = demo_adapter()
    images, labels, boxes = generate_dataset(args.scenes, seed=args.seed, size=int(meta["input_size"][0]))
    inputs = preprocess(images)
    out = output_folder(args.out)
    infos = {m.name: m for m in methods()}
    names = select(args.methods, list(infos), "methods")
    results: dict[str, dict[str, Any]] = {}
    columns: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    print(f"demo: {args.scenes} scenes, shipped model demo_cnn ({', '.join(meta['class_names'])}), explaining the true class")
    scenes = write_scenes(out, images, boxes, labels)
    model_files = copy_model(out)
    print(f"scenes: {len(scenes)} PNGs in {scenes[0].parent} ({scenes[0].name} ...) with their boxes in boxes.json; model: {', '.join(str(p) for p in model_files)}")
    with progress_bars(sys.stderr.isatty()):
        for name in progress(names, total=len(names), description="methods"):
            try:
                started = time.perf_counter()
                quick = infos[name].quick_options  # cheaper settings where the defaults take minutes
                if quick:
                    print(f"{name}: quick settings {', '.join(f'{k}={v}' for k, v in quick.items())} (its defaults take minutes here)")
                exp = explain(adapter, inputs, method=name, targets=labels, **quick)
                seconds = time.perf_counter() - started
            except VexplainError as error:
                results[name] = {"skipped": str(error)}
                continue
            hits, peaks = peak_inside(exp.maps, boxes)
            results[name] = {"hits": int(hits.sum()), "scenes": len(hits), "seconds": round(seconds, 4), "options": _jsonable(exp.options), "warnings": exp.warnings}
            for line in exp.warnings:
                print(f"vexplain demo: warning: {name}: {line}", file=sys.stderr)
            columns[name] = (exp.maps[:FIGURE_ROWS], peaks[:FIGURE_ROWS])
    accuracy = float((adapter.forward(torch.from_numpy(inputs)).argmax(1).numpy() == labels).mean())
    figure_path = out / "demo.png"
    _write_figure(figure_path, images, labels, boxes, columns, meta["class_names"])
    write_text(out / "demo_results.json", json.dumps({"accuracy": accuracy, "seed": args.seed, "methods": results}, indent=2))
    print(f"model accuracy on these scenes: {accuracy:.1%}")
    width = max(len("method"), *(len(name) for name in results)) + 2
    print(f"{'method':<{width}}{'peak inside the object box':<30}{'time':>8}")
    for name, result in results.items():
        if "skipped" in result:
            print(f"{name:<{width}}skipped: {result['skipped']}")
        else:
            share = result["hits"] / result["scenes"]
            print(f"{name:<{width}}{result['hits']:>3}/{result['scenes']:<3} ({share:6.1%}){'':<14}{result['seconds']:>7.2f}s")
    print(f"figure: {figure_path}")
    return 0


def _write_figure(path: Path, images: np.ndarray, labels: np.ndarray, boxes: np.ndarray, columns: dict[str, tuple[np.ndarray, np.ndarray]], class_names: list[str]) -> None:
    from vexplain.demo.figure import demo_figure

    rows = min(FIGURE_ROWS, len(images))
    write_png(path, demo_figure(images[:rows], labels[:rows], boxes[:rows], columns, class_names, scored=len(images)))


def write_scenes(out: Path, images: np.ndarray, boxes: np.ndarray, labels: np.ndarray) -> list[Path]:
    """The generated scenes as ``OUT/scenes/scene_NN.png`` (RGB, in generation order), for ``vexplain
    explain``, and their ground truth as ``OUT/scenes/boxes.json`` (name → ``{"box": [x0, y0, x1, y1],
    "label": class}``), the file ``vexplain evaluate --data OUT/scenes`` reads."""
    digits = max(2, len(str(len(images) - 1)))
    folder = output_folder(out / "scenes")
    names = [f"scene_{i:0{digits}d}.png" for i in range(len(images))]
    truth = {name: {"box": [int(v) for v in box], "label": int(label)} for name, box, label in zip(names, boxes, labels)}
    write_text(folder / "boxes.json", json.dumps(truth, indent=1))
    return [write_png(folder / name, image) for name, image in zip(names, images)]


def copy_model(out: Path) -> list[Path]:
    """The shipped demo model beside the scenes: ``OUT/demo_cnn.onnx`` (with its metadata),
    ``OUT/demo_cnn.pt`` (a state_dict for ``vexplain.demo.model:build``) and ``OUT/demo_cnn.json``."""
    from vexplain.demo.model import ASSETS

    return [write_bytes(out / name, (ASSETS / name).read_bytes()) for name in ("demo_cnn.onnx", "demo_cnn.pt", "demo_cnn.json")]


def _jsonable(options: dict[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in options.items() if k != "targets"}
