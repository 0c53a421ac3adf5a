"""``vexplain explain MODEL IMAGE... --method NAME``: overlays and raw maps for image files."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from vexplain import explain, prepare_images
from vexplain.errors import InvalidOption
from vexplain.files import output_folder
from vexplain.images import DEFAULT_MAX_PIXELS, from_metadata, load_image, model_view
from vexplain.options import parse_option_text
from vexplain.progress import progress, progress_bars
from vexplain.targets import Target, parse

from .explain_dataset_command import add_dataset_arguments, run_dataset, wants_dataset
from .model_loading import add_random_weights_argument, load_model


def add_parser(subcommands: Any) -> None:
    parser = subcommands.add_parser(
        "explain",
        help="explain image files with one method",
        description="Write DIR/<image-stem>.<method>.png (overlay) and DIR/<image-stem>.<method>.npy (raw (H, W) map) per image.",
    )
    parser.add_argument("model", metavar="MODEL", help="a .onnx file, a TorchScript file, or pkg.module:factory with --weights")
    parser.add_argument("images", metavar="IMAGE", nargs="+", help="image files (PNG, JPEG, ...), or one folder or .csv/.json manifest (a data set, see below)")
    parser.add_argument("--method", "-m", default="gradcam", help="method name (see `vexplain methods`; default gradcam)")
    parser.add_argument(
        "--target", "-t",
        help="what to explain: a class index or class name (default: each image's top class), box=x0,y0,x1,y1[:label] "
        "(detection, input pixels), region=mask.png[:label] (segmentation; nonzero pixels inside, resized to the model "
        "input by nearest neighbour), or KIND=VALUE for another registered target kind",
    )
    parser.add_argument("--output", help="the model output to explain, by name or index, for models with several (see the error listing them)")
    parser.add_argument("--layer", "-l", help="layer for CAM-style methods (see `vexplain layers MODEL`)")
    parser.add_argument("--out", "-o", default="vexplain-out", help="output folder (default vexplain-out)")
    parser.add_argument("--weights", "-w", help="state_dict file for a pkg.module:factory MODEL (read with weights_only=True)")
    add_random_weights_argument(parser)
    parser.add_argument("--option", dest="options", action="append", default=[], metavar="KEY=VALUE", help="method option, repeatable; values are Python literals (window=8, stride=(4,4))")
    parser.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="resize images to H W (default: from the model's metadata)")
    parser.add_argument("--mean", type=float, nargs=3, metavar="M", help="per-channel mean for normalisation (default: metadata, else 0)")
    parser.add_argument("--std", type=float, nargs=3, metavar="S", help="per-channel std for normalisation (default: metadata, else 1)")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, metavar="N", help=f"refuse images with more pixels, read from the header before decoding (default {DEFAULT_MAX_PIXELS:,}); large images are decoded at reduced size when --size or the metadata gives a small input")
    parser.add_argument("--alpha", type=float, default=0.5, help="overlay opacity of the heat map (default 0.5)")
    parser.add_argument(
        "--at", choices=("original", "model"), default="original",
        help="resolution of the written overlay and map: each image's own (default; NaN/unblended outside a centre crop) or the model's input",
    )
    parser.add_argument("--colormap", help="colormap: rdbu or an OpenCV name (default: rdbu, centred at zero, for maps with negative values; else jet)")
    add_dataset_arguments(parser)
    parser.set_defaults(run=run)


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """``["k=v", ...]`` → ``{k: literal(v)}``; a pair without '=' is an error."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidOption(f"--option takes KEY=VALUE (e.g. window=8); got {pair!r}")
        options[key.strip()] = parse_option_text(value.strip())
    return options


def resolve_target(text: str | None, class_names: list[str] | None, input_size: tuple[int, int] | None = None) -> int | Target | None:
    """``--target`` as a class index, a class name of the model's metadata, or a target kind
    written ``KIND=VALUE`` (see ``vx.targets.parse``)."""
    return parse(text, class_names, None if input_size is None else tuple(input_size))


def run(args: argparse.Namespace) -> int:
    options = parse_options(args.options)
    if args.layer is not None:
        options["layer"] = args.layer
    if wants_dataset(args):
        named = args.target is not None and args.target != "label" and not args.target.lstrip("-").isdigit()
        names = load_model(args.model, args.weights, args.output, args.random_weights).metadata.get("class_names") if named else None
        return run_dataset(args, options, args.target if args.target == "label" else resolve_target(args.target, names))
    adapter = load_model(args.model, args.weights, args.output, args.random_weights)
    meta = adapter.metadata
    spec = from_metadata(meta, args.size, args.mean, args.std)
    size = spec.size
    class_names = meta.get("class_names")
    target = resolve_target(args.target, class_names, size)
    reduce_to = size if spec.resize_shorter is None else (spec.resize_shorter, spec.resize_shorter)
    images = [(Path(p), load_image(p, max_pixels=args.max_pixels, reduce_to=reduce_to)) for p in args.images]
    out = output_folder(args.out)
    with progress_bars(sys.stderr.isatty()):
        for path, image in progress(images, total=len(images), description="images"):
            photos = prepare_images(image, meta, args.size, args.mean, args.std)
            exp = explain(adapter, photos, method=args.method, targets=target, **options)
            shown = image if args.at == "original" else model_view(image, spec)
            written = exp.save(out, path.stem, [shown], colormap=args.colormap, alpha=args.alpha, colour_bar=True, at=args.at)
            column = int(exp.targets[0])
            if isinstance(target, Target):
                what = exp.options["targets"]
            else:
                label = f" '{class_names[column]}'" if class_names and column < len(class_names) else ""
                what = f"class {column}{label}"
            print(f"{path.name}: {exp.method} for {what} (score {exp.scores[0, column]:.3f}) -> {written[0]}")
            for line in exp.warnings:
                print(f"vexplain explain: warning: {path.name}: {line}", file=sys.stderr)
    return 0

