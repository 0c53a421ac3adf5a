"""The pointing game (Zhang et al. 2016, vexplain's ``pointing_game`` metric) of every method that
runs on a tiny ViT trained on the demo scenes (``demo/train_vit.py``, the hybrid by default), beside
the centre baseline.

Trains the ViT (fixed seed, weights in a temporary folder unless ``--weights`` names a state dict
written by ``demo/train_vit.py``), then explains ``--images`` held-out scenes (their true class as
the target) with every registered method whose required capabilities the model's adapter has
(read from the registry, never a hand-kept list), and scores each with ``vx.evaluate`` against the
scene's object box. Prints the hit rate per method, sorted, with the seconds each took.
``--quick-options`` runs each method with its registered ``quick_options`` (extremal perturbation:
50 iterations instead of 800), recorded per row; ``--methods a,b`` runs only those. With
``--json`` the results are rewritten after every method, so a stopped run keeps what it measured.

    python benchmarks/measure_vit_pointing.py [--arch hybrid] [--images 200] [--epochs 10] [--train 6000] [--weights PATH] [--json PATH] [--quick-options] [--methods a,b]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import vexplain as vx
from vexplain.demo.model import preprocess
from vexplain.demo.scenes import generate_dataset
from vexplain.demo.train import HELDOUT_SEED_OFFSET, channel_stats
from vexplain.demo.train_vit import ARCHITECTURES, INPUT_SIZE, load, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=sorted(ARCHITECTURES), default="hybrid", help="model (default %(default)s)")
    parser.add_argument("--images", type=int, default=200, help="held-out scenes scored (default %(default)s)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train", type=int, default=6000, help="training scenes (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weights", type=Path, help="a demo_vit.pt state dict (skips training; same --train/--seed for the statistics)")
    parser.add_argument("--json", type=Path, help="write the results as JSON to this path (after every method)")
    parser.add_argument("--quick-options", action="store_true", help="each method's registered quick_options (cheaper where the defaults take minutes)")
    parser.add_argument("--methods", default="", help="comma-separated methods to run (default: every one the model supports)")
    args = parser.parse_args()
    x_u8, _, _ = generate_dataset(args.train, args.seed, INPUT_SIZE)
    mean, std = channel_stats(x_u8)
    if args.weights:
        model = load(args.weights, args.arch)
    else:
        model, _ = train(Path(tempfile.mkdtemp(prefix="demo_vit_")), args.epochs, args.seed, args.train, arch=args.arch)
    images, labels, boxes = generate_dataset(args.images, args.seed + HELDOUT_SEED_OFFSET + 1, INPUT_SIZE)
    x = torch.from_numpy(preprocess(images, mean, std))
    with torch.no_grad():
        accuracy = float((model(x).argmax(1).numpy() == labels).mean())
    adapter = vx.adapt(model)
    chosen = {name for name in args.methods.split(",") if name}
    infos = [m for m in vx.methods() if all(adapter.supports(c) for c in m.requires) and (not chosen or m.name in chosen)]
    rows, baseline = [], None
    for info in infos:
        options = dict(info.quick_options) if args.quick_options else {}
        started = time.perf_counter()
        try:
            result = vx.evaluate(model, x, info.name, metric="pointing_game", targets=labels.tolist(), masks=torch.from_numpy(boxes), method_options=options)
        except vx.VexplainError as error:
            print(f"{info.name}: skipped ({error})", flush=True)
            continue
        summary = result.summary()
        baseline = summary.get("baseline_hit", baseline)
        rows.append((info.name, summary["hit"], time.perf_counter() - started, options))
        print(f"{info.name:28s} hit {summary['hit']:.3f}  ({rows[-1][2]:.1f} s)", flush=True)
        if args.json:
            args.json.write_text(json.dumps({"accuracy": accuracy, "baseline": baseline, "images": args.images, "rows": rows}, indent=2))
    print(f"\nheld-out accuracy {accuracy:.3f} on {args.images} scenes; centre baseline {baseline:.3f}\n")
    print("| method | pointing game | seconds | options |\n|---|---|---|---|")
    for name, hit, seconds, options in sorted(rows, key=lambda r: -r[1]):
        print(f"| `{name}` | {hit:.3f} | {seconds:.1f} | {', '.join(f'{k}={v}' for k, v in options.items()) or 'defaults'} |")


if __name__ == "__main__":
    main()
