"""``vexplain explain MODEL DIR_OR_MANIFEST --out OUT [--methods a,b] [--engine ray]``: a data set
into a resumable Parquet dataset (see ``vexplain.datasets``), dispatched to from ``explain``."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from vexplain.errors import InvalidInput, InvalidOption
from vexplain.progress import progress_bars

from .model_loading import check_weights


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """The data-set flags of ``vexplain explain`` (ignored for plain image files unless given)."""
    group = parser.add_argument_group("data sets (MODEL followed by one folder or .csv/.json/.jsonl manifest)")
    group.add_argument("--methods", help="comma-separated methods, all run on every image in one pass (a data-set run; default: --method)")
    group.add_argument("--engine", choices=("local", "ray"), help="data-set engine: local (one process, default) or ray (Ray Data, needs vexplain[ray])")
    group.add_argument("--ray-address", help="Ray cluster to join with --engine ray (default: start a local Ray)")
    group.add_argument("--overwrite", action="store_true", help="replace an OUT folder holding a run with another model, methods or options")
    group.add_argument("--overlays", action="store_true", help="also write OUT/_overlays/<image>.<method>.png (local engine)")
    group.add_argument("--batch-size", type=int, default=16, help="images per explain call (default 16; does not change results)")
    group.add_argument("--shard-size", type=int, default=64, help="images per committed Parquet shard (default 64)")


def wants_dataset(args: argparse.Namespace) -> bool:
    """Whether ``args`` ask for a data-set run: one folder or manifest, or a data-set-only flag."""
    from vexplain.datasets.sources import is_dataset_source

    if args.methods is not None or args.engine is not None or args.ray_address is not None:
        return True
    return len(args.images) == 1 and is_dataset_source(args.images[0])


def run_dataset(args: argparse.Namespace, options: dict[str, Any], target: int | str | None) -> int:
    """Explain the data set named by ``args.images`` with ``options`` (already parsed) and
    ``target`` (None, a class index or ``"label"``), and print one summary line."""
    from vexplain.datasets import explain_dataset

    if len(args.images) > 1 and any(_is_set(a) for a in args.images):
        raise InvalidInput("give one folder or manifest, or image files; not a folder or manifest among several arguments")
    source: Any = args.images[0] if len(args.images) == 1 else list(args.images)
    methods = [m.strip() for m in (args.methods or args.method).split(",") if m.strip()]
    if not methods:
        raise InvalidOption(f"--methods takes comma-separated method names (e.g. gradcam,saliency); got {args.methods!r}")
    if args.ray_address is not None and args.engine != "ray":
        raise InvalidOption("--ray-address goes with --engine ray")
    check_weights(args.model, args.weights, args.random_weights)  # refused in the CLI's words, before any work
    with progress_bars(sys.stderr.isatty()):
        done = explain_dataset(
            args.model,
            source,
            method=methods,
            out=args.out,
            engine=args.engine or "local",
            targets=target,
            weights=args.weights,
            random_weights=args.random_weights,
            size=args.size,
            mean=args.mean,
            std=args.std,
            batch_size=args.batch_size,
            shard_size=args.shard_size,
            overwrite=args.overwrite,
            overlays=args.overlays,
            ray_address=args.ray_address,
            **options,
        )
    print(
        f"{done.images} images x {len(methods)} method(s): {done.rows} rows in {done.shards} new shard(s), "
        f"{done.skipped} images already done ({done.images_per_second:.1f} images/s) -> {done.out}"
    )
    return 0


def _is_set(text: str) -> bool:
    from vexplain.datasets.sources import is_dataset_source

    return is_dataset_source(text)
