"""Occlusion: every vexplain engine and approximate mode against Captum's ``Occlusion``.

Run from the repository root::

    python benchmarks/compare_occlusion.py [--quick] [--only demo|resnet18|vgg] [--repeats R] [--json out.json]

For each case (model, images, window, stride), on the same inputs and target classes, it times

* exact engines: ``engine="incremental"`` (recomputes only what each window changes),
  ``engine="onnx"`` (batched full inference through the cached ONNX export, warmed up first) and,
  where affordable, ``engine="torch"`` (batched full inference in torch);
* approximate modes, all on the incremental engine: ``mode="drilldown"``, ``field_limit=0.5`` and
  both together;
* Captum ``Occlusion`` (window ``(C, h, w)``, strides ``(C, sh, sw)``, ``baselines=0``) at each
  ``perturbations_per_eval`` of the case, keeping its best;

Contenders are interleaved round by round (``--repeats``) and each keeps its fastest time, so a load
change on the machine hits all alike. It prints seconds, peak resident memory above the start,
``captum_best / contender`` ratios, the max |diff| of every exact engine against Captum, and for the
approximate modes the SSIM and Spearman correlation of each image's map against the exact one.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from benchmarks.common import agrees, case_record, environment, interleaved_rounds, print_table, timed, timed_with_peak_memory, write_results
from benchmarks.models import case_model

APPROXIMATE = {"drilldown": {"mode": "drilldown"}, "field_0.5": {"field_limit": 0.5}, "drilldown+field_0.5": {"mode": "drilldown", "field_limit": 0.5}}


def cases(quick: bool) -> list[dict]:
    if quick:
        return [
            dict(name="demo", images=2, size=64, window=8, stride=4, ppe=[16], torch=True),
            dict(name="resnet18", images=1, size=112, window=16, stride=16, ppe=[16], torch=True),
            dict(name="vgg", images=1, size=224, window=16, stride=16, ppe=[16], torch=True),
        ]
    return [
        dict(name="demo", images=1, size=64, window=8, stride=4, ppe=[16, 64], torch=True),
        dict(name="demo", images=8, size=64, window=8, stride=4, ppe=[16, 64], torch=True),
        dict(name="resnet18", images=1, size=224, window=16, stride=8, ppe=[16, 64], torch=True),
        dict(name="resnet18", images=1, size=224, window=16, stride=4, ppe=[16], torch=False),
        dict(name="vgg", images=1, size=224, window=16, stride=8, ppe=[16, 64], torch=True),
        dict(name="vgg", images=1, size=224, window=16, stride=4, ppe=[16], torch=False),
    ]


def run_case(case: dict, repeats: int) -> dict:
    import vexplain as vx
    from captum.attr import Occlusion
    from vexplain.core.similarity import spearman, ssim

    model, weights, inputs = case_model(case["name"], case["images"], case["size"], {})
    channels = inputs.shape[1]
    window, stride = case["window"], case["stride"]
    with torch.no_grad():
        targets = model(inputs).argmax(dim=1)
    target_list = targets.tolist()

    def vexplain(**options):
        return lambda: vx.explain(model, inputs, method="occlusion", targets=target_list, window=window, stride=stride, **options)

    occlusion = Occlusion(model)

    def captum(ppe: int):
        def run():
            with torch.no_grad():
                return occlusion.attribute(inputs, sliding_window_shapes=(channels, window, window), strides=(channels, stride, stride),
                                           baselines=0, target=targets, perturbations_per_eval=ppe)
        return run

    contenders = {"incremental": vexplain(engine="incremental"), "onnx": vexplain(engine="onnx")}
    if case["torch"]:
        contenders["torch"] = vexplain(engine="torch")
    contenders.update({name: vexplain(engine="incremental", **options) for name, options in APPROXIMATE.items()})
    contenders.update({f"captum_ppe_{p}": captum(p) for p in case["ppe"]})

    first_onnx_s, _ = timed(contenders["onnx"])  # export + session, so the timed rounds are warm
    label = f"{case['name']} {len(inputs)}x{case['size']}² window {window} stride {stride}"
    print(f"\n== {label} (weights {weights}); first ONNX call incl. export {first_onnx_s:.2f} s", flush=True)
    times, memory, last = interleaved_rounds(contenders, repeats, timed_with_peak_memory)

    best = {name: min(t) for name, t in times.items()}
    captum_names = [n for n in contenders if n.startswith("captum")]
    best_captum = min(captum_names, key=best.get)
    reference = last[best_captum][:, 0].numpy()
    exact = last["incremental"].maps
    exact_names = [n for n in ("incremental", "onnx", "torch") if n in contenders]
    diffs = {name: float(np.abs(last[name].maps - reference).max()) for name in exact_names}
    approximate = {}
    for name in APPROXIMATE:
        maps = last[name].maps
        approximate[name] = {
            "ssim": [ssim(maps[i], exact[i]) for i in range(len(inputs))],
            "spearman": [spearman(maps[i], exact[i]) for i in range(len(inputs))],
            "windows_evaluated": last[name].options.get("windows_evaluated"),
        }
    return {
        **case_record(label, case, weights, len(inputs), last["incremental"]),
        "seconds": best,
        "all_seconds": times,
        "peak_mb": memory,
        "first_onnx_call_seconds": first_onnx_s,
        "captum_best": best_captum,
        "ratios": {name: best[best_captum] / best[name] for name in contenders if not name.startswith("captum")},
        "max_abs_diff_vs_captum": diffs,
        "maps_agree": all(agrees(v) for v in diffs.values()) and last["incremental"].options["engine"] == "incremental",
        "approximate": approximate,
        "incremental_fallback": last["incremental"].options.get("engine_fallback"),
    }


def print_results(results: list[dict], repeats: int) -> None:
    print(f"\nseconds (best of {repeats}); ratio = Captum best / contender; peak = resident MB above start")
    names = ["incremental", "onnx", "torch", *APPROXIMATE]
    headers = ["case", "windows", "captum best"] + [f"{n}" for n in names] + ["max|diff| exact"]
    rows = []
    for r in results:
        s, q = r["seconds"], r["ratios"]
        cells = [f"{s[n]:.2f}s {q[n]:.1f}x" if n in s else "-" for n in names]
        rows.append([r["case"], r["windows_per_image"] * r["images"], f"{s[r['captum_best']]:.2f}s ({r['captum_best'][7:]})", *cells,
                     f"{max(r['max_abs_diff_vs_captum'].values()):.1e}"])
    print_table(headers, rows)
    print("\npeak MB above start")
    print_table(["case", *r["peak_mb"].keys()], [[r["case"], *[f"{v:.0f}" for v in r["peak_mb"].values()]] for r in results])
    print("\napproximate modes vs the exact map, per image: SSIM min / mean, Spearman min / mean")
    rows = []
    for r in results:
        for name, a in r["approximate"].items():
            rows.append([r["case"], name, f"{min(a['ssim']):.3f} / {np.mean(a['ssim']):.3f}", f"{min(a['spearman']):.3f} / {np.mean(a['spearman']):.3f}",
                         a["windows_evaluated"] if a["windows_evaluated"] is None else f"{np.mean(a['windows_evaluated']):.0f}"])
    print_table(["case", "mode", "SSIM", "Spearman", "windows evaluated / image"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of under a minute")
    parser.add_argument("--json", type=Path, help="write the results as JSON to this path")
    parser.add_argument("--repeats", type=int, default=1, help="rounds; each times every contender once, interleaved (default 1)")
    parser.add_argument("--only", choices=("demo", "resnet18", "vgg"), help="run one model only")
    args = parser.parse_args(argv)

    env = environment()
    print(f"torch {env['torch']} ({env['torch_threads']} threads), onnxruntime {env['onnxruntime']}, "
          f"captum {env['captum']}, {env['cpu_count']} CPUs, load average {env['load_average_at_start']}")
    results = [run_case(c, args.repeats) for c in cases(args.quick) if args.only in (None, c["name"])]
    print_results(results, args.repeats)
    write_results(args.json, "occlusion", quick=args.quick, repeats=args.repeats, environment=env, results=results)
    return 0 if all(r["maps_agree"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
