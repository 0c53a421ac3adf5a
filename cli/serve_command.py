"""``vexplain serve [MODEL]``: the local web viewer (needs the ``serve`` extra)."""
from __future__ import annotations

import argparse
from typing import Any

from vexplain.errors import InvalidOption

from .model_loading import add_random_weights_argument


def add_parser(subcommands: Any) -> None:
    parser = subcommands.add_parser(
        "serve",
        help="open a local web viewer: drop images, compare methods side by side",
        description=(
            "Serve a page on this machine where you drop or pick images, choose methods and their options, and see "
            "the overlays side by side with scores, timings and a colour bar. Without MODEL it explains the shipped "
            "demo model. Needs the 'serve' extra: pip install 'vexplain[serve]'."
        ),
    )
    parser.add_argument("model", metavar="MODEL", nargs="?", help="a .onnx file, a TorchScript file, or pkg.module:factory with --weights (default: the shipped demo model)")
    parser.add_argument("--weights", "-w", help="state_dict file for a pkg.module:factory MODEL (read with weights_only=True)")
    add_random_weights_argument(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", "-p", type=int, default=8000, help="port (default 8000; 0: any free port)")
    parser.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="resize uploads to H W (default: from the model's metadata)")
    parser.add_argument("--mean", type=float, nargs=3, metavar="M", help="per-channel mean for normalisation (default: metadata, else 0)")
    parser.add_argument("--std", type=float, nargs=3, metavar="S", help="per-channel std for normalisation (default: metadata, else 1)")
    parser.add_argument("--max-upload-mb", type=float, default=16.0, help="largest image file accepted, in MiB (default 16)")
    parser.add_argument("--max-pixels", type=int, default=25_000_000, help="largest image accepted, in pixels (default 25000000)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from vexplain.errors import require_extra

    require_extra("starlette", "serve", "vexplain serve")
    require_extra("uvicorn", "serve", "vexplain serve")
    require_extra("python_multipart", "serve", "vexplain serve")
    from vexplain.viewer.app import create_app
    from vexplain.viewer.handlers import ViewerModel
    from vexplain.viewer.security import is_loopback
    from vexplain.viewer.server import bind, url_of, uvicorn_server
    from vexplain.viewer.uploads import MIB, Limits

    if args.max_upload_mb <= 0 or args.max_pixels < 1:
        raise InvalidOption(f"--max-upload-mb and --max-pixels must be positive; got {args.max_upload_mb} and {args.max_pixels}")
    limits = Limits(max_bytes=int(args.max_upload_mb * MIB), max_pixels=args.max_pixels)
    model = _viewer_model(args, ViewerModel)
    sock = bind(args.host, args.port)
    app = create_app(model, limits, bind_host=args.host)
    print(f"vexplain viewer for {model.adapter.describe()}: {url_of(sock)}  (Ctrl-C stops it)", flush=True)
    if not is_loopback(args.host):
        print(f"warning: listening on {args.host}: anyone who can reach this machine can upload images and run the model", flush=True)
    try:
        uvicorn_server(app).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it shut down on: stopping is the normal end
        pass
    finally:
        sock.close()
    print("vexplain viewer stopped", flush=True)
    return 0


def _viewer_model(args: argparse.Namespace, viewer_model: Any) -> Any:
    if args.model is None:
        if args.weights or args.random_weights:
            given = "--weights" if args.weights else "--random-weights"
            raise InvalidOption(f"{given} needs a MODEL (pkg.module:factory); without MODEL the shipped demo model is served")
        from vexplain.demo.model import demo_adapter

        return viewer_model.from_adapter(demo_adapter(), "demo_cnn (shipped demo model)", args.size, args.mean, args.std)
    from .model_loading import load_model

    return viewer_model.from_adapter(load_model(args.model, args.weights, random_weights=args.random_weights), args.model, args.size, args.mean, args.std)
