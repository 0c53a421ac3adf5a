"""``vexplain layers MODEL``: names usable as ``--layer``, the default CAM layer marked."""
from __future__ import annotations

import argparse
from typing import Any

import torch

from vexplain.core.errors import UnsupportedCapability

from .model_loading import load_model


def add_parser(subcommands: Any) -> None:
    parser = subcommands.add_parser("layers", help="list a model's layers", description="List the layer names a model accepts as --layer; '*' marks the default for CAM methods.")
    parser.add_argument("model", metavar="MODEL", help="a .onnx file, a TorchScript file, or pkg.module:factory with --weights")
    parser.add_argument("--weights", "-w", help="state_dict file for a pkg.module:factory MODEL")
    parser.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="input size used to trace shapes (default: metadata, else 224 224)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    adapter = load_model(args.model, args.weights)
    size = args.size or adapter.metadata.get("input_size") or (224, 224)
    channels = adapter.input_channels or 3
    try:
        default = adapter.default_cam_layer(torch.zeros((1, channels, *size)))
    except UnsupportedCapability:
        default = None
    names = adapter.layers()
    if not names:
        print(f"{adapter.describe()} exposes no layers (methods that need only forward passes still work)")
    for name in names:
        print(f"{'*' if name == default else ' '} {name}")
    return 0
