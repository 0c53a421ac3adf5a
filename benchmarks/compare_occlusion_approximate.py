"""Occlusion's approximate modes on the demo set: speed against Captum, similarity to the exact map.

Run from the repository root::

    python benchmarks/compare_occlusion_approximate.py [--images 32] [--timed 8] [--stride 1] [--json out.json]

On ``--images`` held-out demo scenes (``generate_dataset(images, seed=123)``, the shipped model,
window 8), it computes the exact map (incremental engine) and each approximate mode's map and
prints every image's SSIM and Spearman correlation against the exact one. On the first ``--timed``
images it times, in one run, Captum ``Occlusion`` at ``perturbations_per_eval`` 16 and 64 (its best
kept), the exact engines and each approximate mode, and prints ``captum_best / contender``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from benchmarks.common import agrees, environment, print_table, timed, write_results

WINDOW = 8
MODES = {
    "field_limit 0.4": {"field_limit": 0.4},
    "drilldown": {"mode": "drilldown"},
    "drilldown top 0.02": {"mode": "drilldown", "top_fraction": 0.02},
    "drilldown top 0.02 + field_limit 0.4": {"mode": "drilldown", "top_fraction": 0.02, "field_limit": 0.4},
}


def main(argv: list[str] | None = None) -> int:
    import vexplain as vx
    from captum.attr import Occlusion
    from vexplain.core.similarity import spearman, ssim
    from vexplain.demo.model import load_demo_model, preprocess
    from vexplain.demo.scenes import generate_dataset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32, help="scenes compared with the exact map (default 32)")
    parser.add_argument("--timed", type=int, default=8, help="scenes timed, the first of them (default 8)")
    parser.add_argument("--stride", type=int, default=1, help="fine stride (default 1)")
    parser.add_argument("--json", type=Path, help="write the results as JSON to this path")
    args = parser.parse_args(argv)

    env = environment()
    print(f"torch {env['torch']}, onnxruntime {env['onnxruntime']}, captum {env['captum']}, load average {env['load_average_at_start']}")
    model = load_demo_model()
    images, _, _ = generate_dataset(args.images, seed=123)
    inputs = torch.from_numpy(preprocess(images))
    with torch.no_grad():
        targets = model(inputs).argmax(dim=1)
    common = dict(window=WINDOW, stride=args.stride)

    exact = vx.explain(model, inputs, method="occlusion", targets=targets.tolist(), **common).maps
    quality = {}
    for name, options in MODES.items():
        maps = vx.explain(model, inputs, method="occlusion", targets=targets.tolist(), **common, **options).maps
        quality[name] = {"ssim": [ssim(maps[i], exact[i]) for i in range(len(inputs))],
                         "spearman": [spearman(maps[i], exact[i]) for i in range(len(inputs))]}

    timed_inputs, timed_targets = inputs[: args.timed], targets[: args.timed]
    occlusion = Occlusion(model)
    seconds, last = {}, {}
    for ppe in (16, 64):
        with torch.no_grad():
            seconds[f"captum ppe {ppe}"], last[ppe] = timed(lambda: occlusion.attribute(
                timed_inputs, sliding_window_shapes=(3, WINDOW, WINDOW), strides=(3, args.stride, args.stride),
                baselines=0, target=timed_targets, perturbations_per_eval=ppe))
    contenders = {"exact incremental": {"engine": "incremental"}, "exact onnx": {"engine": "onnx"}, **MODES}
    vx.explain(model, timed_inputs[:1], method="occlusion", **common, engine="onnx")  # export outside the timing
    for name, options in contenders.items():
        seconds[name], result = timed(lambda: vx.explain(model, timed_inputs, method="occlusion", targets=timed_targets.tolist(), **common, **options))
        last[name] = result
    best_captum = min(seconds["captum ppe 16"], seconds["captum ppe 64"])
    max_diff = float(np.abs(last["exact incremental"].maps - last[16][:, 0].numpy()).max())

    print(f"\ndemo set, window {WINDOW}, stride {args.stride}: {args.timed} images timed, {args.images} compared")
    rows = [[name, f"{seconds[name]:.3f}", f"{best_captum / seconds[name]:.1f}x",
             f"{min(quality[name]['ssim']):.3f}" if name in quality else "exact", f"{np.mean(quality[name]['ssim']):.3f}" if name in quality else "-",
             f"{min(quality[name]['spearman']):.3f}" if name in quality else "-"] for name in seconds]
    print_table(["contender", "seconds", "Captum best / it", "SSIM min", "SSIM mean", "Spearman min"], rows)
    print(f"exact incremental vs Captum max |diff|: {max_diff:.1e}")
    for name, q in quality.items():
        print(f"SSIM per image, {name}: " + " ".join(f"{v:.3f}" for v in q["ssim"]))
    write_results(args.json, "occlusion-approximate", environment=env, window=WINDOW, stride=args.stride,
                  seconds=seconds, captum_best=best_captum, quality=quality, max_abs_diff=max_diff)
    return 0 if agrees(max_diff) else 1


if __name__ == "__main__":
    raise SystemExit(main())
