"""``vexplain layers MODEL``: the feature maps and token grids usable as ``--layer``, with their
shapes (and a token layer's grid and prefix), the default CAM layer marked."""
from __future__ import annotations

import argparse
from typing import Any

import torch

from vexplain.errors import UnsupportedCapability

from .model_loading import add_random_weights_argument, load_model


def add_parser(subcommands: Any) -> None:
    parser = subcommands.add_parser(
        "layers", help="list a model's layers",
        description="List the 4-D feature maps and token grids a model accepts as --layer, with their shapes for one input (and the grid and prefix tokens of a token layer); '*' marks the default for CAM methods.",
    )
    parser.add_argument("model", metavar="MODEL", help="a .onnx file, a TorchScript file, or pkg.module:factory with --weights")
    parser.add_argument("--weights", "-w", help="state_dict file for a pkg.module:factory MODEL")
    add_random_weights_argument(parser)
    parser.add_argument("--output", help="the explained output (name or index), for models with several: the default layer is the one feeding its classifier")
    parser.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="input size used to trace shapes (default: metadata, else 224 224)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    adapter = load_model(args.model, args.weights, args.output, args.random_weights)
    size = args.size or adapter.metadata.get("input_size") or (224, 224)
    sample = torch.zeros((1, adapter.input_channels or 3, *size))
    try:
        default = adapter.default_cam_layer(sample)
    except UnsupportedCapability:
        default = None
    shapes = adapter.layer_shapes(sample)
    grids = adapter.layer_grids(sample)
    if grids:
        order = adapter.layers()
        shapes = {name: (grids[name][0] if name in grids else shapes[name]) for name in order if name in shapes or name in grids}
    if not shapes:
        print(f"{adapter.describe()} exposes no feature maps usable as --layer (methods that need only forward passes still work)")
        return 0
    width = max(len(name) for name in shapes)
    for name, shape in shapes.items():
        print(f"{'*' if name == default else ' '} {name:<{width}}  ({', '.join(map(str, shape))}){_grid_text(grids.get(name))}")
    if default is None:
        print("no default CAM layer (no global average pooling feeding a linear classifier): pass --layer")
    return 0


def _grid_text(grid: Any) -> str:
    """``  tokens: grid 14x14, prefix 1`` for a token-grid or channels-last layer, else nothing."""
    if grid is None:
        return ""
    notes = grid[1]
    return f"  {notes['layout'].replace('_', '-')}: grid {notes['grid'][0]}x{notes['grid'][1]}, prefix {notes['prefix']}"
