"""``vexplain evaluate MODEL --data DIR_OR_MANIFEST --out OUT [--engine ray]``: methods × metrics
over a data set into the resumable Parquet dataset of ``vx.evaluate_dataset`` (one row per image ×
method, metric columns), then the summary table (mean ± std per method × metric value).

Chosen over the in-memory ``--model M --data DIR`` report when MODEL is given positionally, when
``--engine`` is given, or when ``--data`` is a manifest. Targets: ``--target`` (``label``, ``top`` or
a class index); by default each image's label when every image has one (class sub-folders or a
manifest ``label`` column), else its top class, as ``vexplain evaluate`` explains its truth labels.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from vexplain.display import markdown_table
from vexplain.errors import InvalidOption
from vexplain.progress import progress_bars

from .model_loading import check_weights


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """The data-set flags of ``vexplain evaluate`` (and its optional positional MODEL)."""
    parser.add_argument("model_spec", nargs="?", metavar="MODEL", help="the model, for a data-set run into a Parquet dataset (--data is then a folder or a .csv/.json/.jsonl manifest)")
    group = parser.add_argument_group("data sets (MODEL --data DIR_OR_MANIFEST --out OUT: resumable Parquet rows with metric columns)")
    group.add_argument("--engine", choices=("local", "ray"), help="data-set engine: local (one process, default) or ray (Ray Data, needs vexplain[ray])")
    group.add_argument("--ray-address", help="Ray cluster to join with --engine ray (default: start a local Ray)")
    group.add_argument("--target", help="class to explain per image: label (the source's labels), top, or a class index (default: label when every image has one, else top)")
    group.add_argument("--overwrite", action="store_true", help="replace an OUT folder holding a run with another model, methods, metrics or options")
    group.add_argument("--batch-size", type=int, default=16, help="images per explain call (default 16; does not change results)")
    group.add_argument("--shard-size", type=int, default=64, help="images per committed Parquet shard (default 64)")


def wants_dataset(args: argparse.Namespace) -> bool:
    """Whether ``args`` ask for a data-set run rather than the in-memory report."""
    if args.model_spec is not None or args.engine is not None or args.ray_address is not None or args.target is not None:
        return True
    return args.data is not None and Path(args.data).suffix.lower() in (".csv", ".json", ".jsonl")


def run_dataset(args: argparse.Namespace, methods: list[str], metrics: list[str] | None, method_options: dict, metric_options: dict) -> int:
    """Run ``vx.evaluate_dataset`` for ``args`` and print the summary table."""
    from vexplain.datasets import evaluate_dataset
    from vexplain.datasets.sources import resolve_source

    model = _model(args)
    check_weights(model, args.weights, args.random_weights)  # refused in the CLI's words, before any work
    if args.data is None:
        raise InvalidOption("a data-set evaluation needs --data (a folder of images or a .csv/.json/.jsonl manifest)")
    if args.ray_address is not None and args.engine != "ray":
        raise InvalidOption("--ray-address goes with --engine ray")
    for flag, value in (("--truth", args.truth), ("--images", args.images)):
        if value is not None:
            raise InvalidOption(f"{flag} belongs to the in-memory report (--model M --data DIR); a data-set run reads labels and boxes from class sub-folders or the manifest")
    target = _target(args.target)
    if args.target is None and all(item.label is not None for item in resolve_source(args.data).items):
        target = "label"
    with progress_bars(sys.stderr.isatty()):
        done = evaluate_dataset(
            model, args.data, methods=methods, metrics=metrics, out=args.out, engine=args.engine or "local", targets=target,
            weights=args.weights, random_weights=args.random_weights, size=args.size, mean=args.mean, std=args.std,
            batch_size=args.batch_size, shard_size=args.shard_size, overwrite=args.overwrite,
            method_options={m: o for m, o in method_options.items() if o}, metric_options={m: o for m, o in metric_options.items() if o},
            ray_address=args.ray_address,
        )
    if done.summary:
        from vexplain.datasets.metrics import summary_table

        print(markdown_table(*summary_table(done.summary)))
    print(
        f"{done.images} images x {len(methods)} method(s), metrics {', '.join(metrics) if metrics else 'every applicable'}: {done.rows} rows in {done.shards} new shard(s), "
        f"{done.skipped} images already done ({done.images_per_second:.1f} images/s) -> {done.out}",
        file=sys.stderr,
    )
    return 0


def _model(args: argparse.Namespace) -> str:
    if args.model_spec is not None and args.model is not None:
        raise InvalidOption("give the model once: MODEL or --model, not both")
    model = args.model_spec or args.model
    if model is None:
        raise InvalidOption("a data-set evaluation needs MODEL (a .onnx or TorchScript file, or pkg.module:factory with --weights)")
    return model


def _target(text: str | None) -> Any:
    if text is None or text == "top":
        return None
    if text == "label":
        return "label"
    if text.isdigit():
        return int(text)
    raise InvalidOption(f"--target of a data-set evaluation is label, top or a class index >= 0; got {text!r}")
