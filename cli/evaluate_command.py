"""``vexplain evaluate``: methods × metrics over a data set; table on stdout, CSV, JSON and an HTML report."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from vexplain import methods as registered_methods, metrics as registered_metrics
from vexplain.display import markdown_table
from vexplain.errors import InvalidOption
from vexplain.files import output_folder
from vexplain.progress import progress_bars

from .evaluate_data import TRUTH_FILE, demo_set, folder_set
from .evaluate_dataset_command import add_dataset_arguments, run_dataset, wants_dataset
from .evaluate_outputs import summary_rows, write_csv, write_json
from .evaluate_run import RANDOM_BASELINE, check_options, run_all, select, split_options
from .explain_command import parse_options
from .model_loading import add_random_weights_argument, load_model
from .report_html import write_report

DEFAULT_DEMO_IMAGES = 16


def add_parser(subcommands: Any) -> None:
    parser = subcommands.add_parser(
        "evaluate",
        help="score methods with faithfulness and localisation metrics over a data set",
        description=(
            "Explain a data set with each method and score every explanation with each metric (deletion, insertion, "
            f"pointing game, randomisation, ROAD, plugins). A random map ({RANDOM_BASELINE}) is always scored as a "
            "baseline. Without --data: the shipped demo model on generated scenes with their object boxes. Writes "
            "results.csv (per image), results.json, report.html (self-contained) and prints a markdown table."
        ),
    )
    parser.add_argument("--model", help="a .onnx file, a TorchScript file, or pkg.module:factory with --weights (default: the shipped demo model)")
    parser.add_argument("--weights", "-w", help="state_dict file for a pkg.module:factory MODEL (read with weights_only=True)")
    add_random_weights_argument(parser)
    parser.add_argument("--data", help="a folder of images (default: generated demo scenes); with MODEL or --engine, a folder or manifest for a Parquet data-set run")
    parser.add_argument("--truth", help=f"ground-truth JSON for --data: name -> {{'box': [x0, y0, x1, y1] | 'mask': 'file.png', 'label': class}} (default DATA/{TRUTH_FILE})")
    parser.add_argument("--images", type=int, help=f"number of images (default {DEFAULT_DEMO_IMAGES} generated scenes, or every file of --data)")
    parser.add_argument("--seed", type=int, default=2026, help="seed of the generated scenes and of the random baseline (default 2026)")
    parser.add_argument("--methods", help="comma-separated methods (default: every registered method the model supports)")
    parser.add_argument("--metrics", help="comma-separated metrics (default: every registered metric)")
    parser.add_argument("--option", dest="options", action="append", default=[], metavar="NAME.KEY=VALUE", help="option of a method or metric, repeatable (deletion.steps=50, occlusion.window=8)")
    parser.add_argument("--out", "-o", default="vexplain-eval", help="output folder (default vexplain-eval)")
    parser.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="resize --data images to H W (default: the model's metadata)")
    parser.add_argument("--mean", type=float, nargs=3, metavar="M", help="per-channel mean for normalisation (default: metadata, else 0)")
    parser.add_argument("--std", type=float, nargs=3, metavar="S", help="per-channel std for normalisation (default: metadata, else 1)")
    add_dataset_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.images is not None and args.images < 1:
        raise InvalidOption(f"--images must be at least 1; got {args.images}")
    if wants_dataset(args):
        return _run_dataset(args)
    if args.model is None and args.data is not None:
        raise InvalidOption("--data needs --model (the shipped demo model only knows the generated scenes)")
    if args.model is None:
        adapter, data = demo_set(args.images or DEFAULT_DEMO_IMAGES, args.seed)
        model_name = "shipped demo CNN"
    else:
        adapter = load_model(args.model, args.weights, random_weights=args.random_weights)
        meta = adapter.metadata
        if args.data is None:
            raise InvalidOption("--model needs --data (a folder of images with a ground-truth file)")
        mean = args.mean or meta.get("mean") or (0.0, 0.0, 0.0)
        std = args.std or meta.get("std") or (1.0, 1.0, 1.0)
        data = folder_set(args.data, args.truth, adapter, args.images, args.size, mean, std)
        model_name = args.model
    methods = select(args.methods, [m.name for m in registered_methods(supported_by=adapter)], "methods")
    metric_infos = {m.name: m for m in registered_metrics()}
    metrics = [metric_infos[name] for name in select(args.metrics, list(metric_infos), "metrics")]
    method_options, metric_options = split_options(parse_options(args.options), methods, [m.name for m in metrics])
    check_options(method_options, metric_options)
    out = output_folder(args.out)
    print(f"evaluate: {model_name}, {len(data.names)} images of {data.name}; methods: {', '.join(methods)}; metrics: {', '.join(m.name for m in metrics)}", file=sys.stderr)
    with progress_bars(sys.stderr.isatty()):
        runs = run_all(adapter, data, methods, metrics, method_options, metric_options, args.seed)
    summary = summary_rows(runs, metrics)
    write_csv(out / "results.csv", runs, data)
    write_json(out / "results.json", runs, metrics, data, model_name)
    write_report(out / "report.html", runs, metrics, data, model_name, summary, adapter.metadata.get("class_names"))
    print(markdown_table(*summary))
    for run_ in runs:
        if run_.skipped:
            print(f"skipped {run_.name}: {run_.skipped}", file=sys.stderr)
        for line in run_.explanation.warnings if run_.explanation is not None else ():
            print(f"vexplain evaluate: warning: {run_.name}: {line}", file=sys.stderr)
        for metric, reason in run_.failures.items():
            print(f"failed: {run_.name} × {metric}: {reason}", file=sys.stderr)
        for metric, reason in run_.not_applicable.items():
            print(f"not applicable: {run_.name} × {metric}: {reason}", file=sys.stderr)
    print(f"wrote {out / 'results.csv'}, {out / 'results.json'}, {out / 'report.html'}", file=sys.stderr)
    return 0


def _run_dataset(args: argparse.Namespace) -> int:
    """``vexplain evaluate MODEL --data DIR_OR_MANIFEST``: see ``evaluate_dataset_command``."""
    model = args.model_spec or args.model
    adapter = load_model(model, args.weights, random_weights=args.random_weights) if model and not args.methods else None
    methods = select(args.methods, [m.name for m in registered_methods(supported_by=adapter)] if adapter is not None else [], "methods")
    metrics = select(args.metrics, [m.name for m in registered_metrics()], "metrics") if args.metrics else None
    method_options, metric_options = split_options(parse_options(args.options), methods, metrics or [m.name for m in registered_metrics()])
    return run_dataset(args, methods, metrics, method_options, metric_options)
