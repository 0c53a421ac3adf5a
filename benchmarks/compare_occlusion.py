"""Occlusion: vexplain (ONNX Runtime and torch engines) against Captum's ``Occlusion``.

Run from the repository root::

    python benchmarks/compare_occlusion.py [--quick] [--json results.json] [--repeats R]

For each model, on the same inputs and the same target classes, it times

* vexplain occlusion, default engine (ONNX Runtime via the cached export): the first call, which
  includes the ONNX export and the session creation, and a warm call (export cached);
* vexplain occlusion with ``engine="torch"``;
* Captum ``Occlusion`` with window ``(C, h, w)``, strides ``(C, sh, sw)``, ``baselines=0`` at
  several ``perturbations_per_eval`` values, and the best of them;

checks that the maps agree (max |vexplain - captum| <= 1e-4 on sizes where windows tile exactly)
and prints seconds and speed-up ratios ``captum_best / vexplain``.
"""
from __future__ import annotations

import argparse
import gc
import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from benchmarks.common import environment, print_table, timed
from benchmarks.models import demo_inputs, demo_model, resnet18_shaped, resnet_inputs

TOLERANCE = 1e-4


def cases(quick: bool) -> list[dict]:
    if quick:
        return [
            dict(name="demo", images=2, size=64, window=8, stride=4, ppe=[16, 64]),
            dict(name="resnet18", images=1, size=112, window=16, stride=16, ppe=[16, 64]),
        ]
    return [
        dict(name="demo", images=8, size=64, window=8, stride=4, ppe=[1, 16, 64]),
        dict(name="resnet18", images=1, size=224, window=16, stride=8, ppe=[1, 16, 64]),
    ]


def run_case(case: dict, repeats: int) -> dict:
    import vexplain as vx
    from captum.attr import Occlusion

    if case["name"] == "demo":
        model, weights = demo_model()
        inputs = demo_inputs(case["images"])
    else:
        model, weights = resnet18_shaped(), "random (seeded)"
        inputs = resnet_inputs(case["images"], case["size"])
    channels, height, width = inputs.shape[1:]
    window, stride = case["window"], case["stride"]
    assert (height - window) % stride == 0 and (width - window) % stride == 0, "windows must tile exactly"
    with torch.no_grad():
        targets = model(inputs).argmax(dim=1)  # also warms torch up before any timing
    target_list = [int(t) for t in targets]
    windows = ((height - window) // stride + 1) * ((width - window) // stride + 1)
    print(f"\n== {case['name']}: {len(inputs)} x {tuple(inputs.shape[1:])}, weights {weights}, "
          f"window {window}, stride {stride}: {windows} windows per image", flush=True)

    def vexplain(engine: str):
        return vx.explain(model, inputs, method="occlusion", targets=target_list, window=window, stride=stride, engine=engine)

    occlusion = Occlusion(model)

    def captum(ppe: int):
        with torch.no_grad():
            return occlusion.attribute(
                inputs,
                sliding_window_shapes=(channels, window, window),
                strides=(channels, stride, stride),
                baselines=0,
                target=targets,
                perturbations_per_eval=ppe,
            )

    first_s, first = timed(lambda: vexplain("auto"))
    print(f"vexplain auto, first call (export + session + run): {first_s:8.3f} s  engine={first.options['engine']} "
          f"export_cached={first.options.get('export_cached')} batch_size={first.options['batch_size']}", flush=True)
    contenders = {"vexplain_onnx_warm": lambda: vexplain("auto"), "vexplain_torch": lambda: vexplain("torch")}
    contenders.update({f"captum_ppe_{p}": (lambda p=p: captum(p)) for p in case["ppe"]})
    times: dict[str, list[float]] = {label: [] for label in contenders}
    last: dict[str, object] = {}
    for round_ in range(repeats):  # rounds interleave the contenders, so a load change hits all alike
        for label, fn in contenders.items():
            seconds, last[label] = timed(fn)
            times[label].append(seconds)
            print(f"round {round_ + 1}/{repeats} {label:24s}: {seconds:8.3f} s", flush=True)
            gc.collect()
    warm, via_torch = last["vexplain_onnx_warm"], last["vexplain_torch"]
    warm_s, torch_s = min(times["vexplain_onnx_warm"]), min(times["vexplain_torch"])
    warm_times, torch_times = times["vexplain_onnx_warm"], times["vexplain_torch"]
    captum_times = {p: times[f"captum_ppe_{p}"] for p in case["ppe"]}
    captum_maps = {p: last[f"captum_ppe_{p}"][:, 0].numpy() for p in case["ppe"]}
    best_ppe = min(captum_times, key=lambda p: min(captum_times[p]))
    captum_best = min(captum_times[best_ppe])
    reference = captum_maps[best_ppe]
    diffs = {
        "onnx_vs_captum": float(np.abs(warm.maps - reference).max()),
        "onnx_first_vs_captum": float(np.abs(first.maps - reference).max()),
        "torch_vs_captum": float(np.abs(via_torch.maps - reference).max()),
        "captum_ppe_spread": float(max(np.abs(m - reference).max() for m in captum_maps.values())),
    }
    return {
        "case": case["name"],
        "weights": weights,
        "images": len(inputs),
        "input_shape": list(inputs.shape[1:]),
        "window": window,
        "stride": stride,
        "windows_per_image": windows,
        "forward_passes": windows * len(inputs),
        "vexplain_batch_size": warm.options["batch_size"],
        "vexplain_engine": warm.options["engine"],
        "seconds": {
            "vexplain_onnx_first": first_s,
            "vexplain_onnx_warm": warm_s,
            "vexplain_torch": torch_s,
            **{f"captum_ppe_{p}": min(t) for p, t in captum_times.items()},
            "captum_best": captum_best,
        },
        "all_seconds": {
            "vexplain_onnx_warm": warm_times,
            "vexplain_torch": torch_times,
            **{f"captum_ppe_{p}": t for p, t in captum_times.items()},
        },
        "captum_best_ppe": best_ppe,
        "ratios": {
            "captum_best/vexplain_onnx_warm": captum_best / warm_s,
            "captum_best/vexplain_onnx_first": captum_best / first_s,
            "captum_best/vexplain_torch": captum_best / torch_s,
        },
        "max_abs_diff": diffs,
        "max_abs_map": float(np.abs(reference).max()),
        "maps_agree": all(v <= TOLERANCE for v in diffs.values()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of a few seconds")
    parser.add_argument("--json", type=Path, help="write the results as JSON to this path")
    parser.add_argument("--repeats", type=int, default=1, help="rounds; each round times every contender once (interleaved), the fastest time of each contender is kept (default 1)")
    parser.add_argument("--only", choices=("demo", "resnet18"), help="run one model only")
    args = parser.parse_args(argv)

    env = environment()
    print(f"torch {env['torch']} ({env['torch_threads']} threads), onnxruntime {env['onnxruntime']}, "
          f"captum {env['captum']}, {env['cpu_count']} CPUs, load average {env['load_average_at_start']}")
    results = [run_case(c, args.repeats) for c in cases(args.quick) if args.only in (None, c["name"])]

    print("\nseconds (best of %d); ratio = captum_best / vexplain" % args.repeats)
    headers = ["model", "passes", "vx onnx 1st", "vx onnx warm", "vx torch", "captum ppe: s", "captum best",
               "best/onnx warm", "best/onnx 1st", "best/torch", "max|diff|"]
    rows = []
    for r in results:
        s, q = r["seconds"], r["ratios"]
        ppe = ", ".join(f"{p.split('_')[-1]}: {v:.2f}" for p, v in s.items() if p.startswith("captum_ppe_"))
        rows.append([r["case"], r["forward_passes"], s["vexplain_onnx_first"], s["vexplain_onnx_warm"], s["vexplain_torch"],
                     ppe, f"{s['captum_best']:.3f} (ppe {r['captum_best_ppe']})",
                     f"{q['captum_best/vexplain_onnx_warm']:.2f}x", f"{q['captum_best/vexplain_onnx_first']:.2f}x",
                     f"{q['captum_best/vexplain_torch']:.2f}x", max(r["max_abs_diff"].values())])
    print_table(headers, rows)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"benchmark": "occlusion", "quick": args.quick, "repeats": args.repeats,
                                         "environment": env, "results": results}, indent=2))
        print(f"\nwrote {args.json}")
    bad = [r["case"] for r in results if not r["maps_agree"]]
    if bad:
        print(f"\nMAPS DISAGREE (> {TOLERANCE}) for: {', '.join(bad)}", file=sys.stderr)
        return 1
    print(f"\nmaps agree within {TOLERANCE} for every case")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
