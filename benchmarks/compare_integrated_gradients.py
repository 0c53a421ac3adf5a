"""Integrated Gradients: vexplain against Captum ``IntegratedGradients`` in the same run.

Run from the repository root::

    python benchmarks/compare_integrated_gradients.py [--quick] [--json results.json] [--repeats R] [--steps S]

For each (model, batch) — the shipped demo model (64²) and a ResNet-18-shaped model (224², 112²
with ``--quick``), batch 1 and 16 — it times, after warm-up, the median of ``R`` calls of

* ``plain fwd+bwd``: one forward and backward pass of the batch, for scale (IG costs about
  ``steps`` of them);
* ``vx.explain(adapter, x, "integrated_gradients", steps=S)``: an adapter made once with
  ``vx.adapt(model)``, path points in batches of the derived default ``batch_size`` (from
  ``memory_mb=1024``: 256 for the demo model, 27 for ResNet-18 at 224²);
* Captum ``IntegratedGradients(model).attribute(x, target, n_steps=S)`` with
  ``internal_batch_size`` = that same batch size, and (demo model only, where memory allows)
  without it: all N·S points in one pass;

both with Captum's default rule ``gausslegendre``, and prints the ratios ``vexplain / Captum``
and the max |difference| of the attributions.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from benchmarks.common import agrees, bench_parser, chosen_cases, environment, median_of, print_table, repeats_of, write_results
from benchmarks.models import case_model

def cases(quick: bool) -> list[dict]:
    if quick:
        return [dict(name="demo", batch=1, size=64), dict(name="demo", batch=16, size=64), dict(name="resnet18", batch=1, size=112)]
    return [
        dict(name="demo", batch=1, size=64),
        dict(name="demo", batch=16, size=64),
        dict(name="resnet18", batch=1, size=224),
        dict(name="resnet18", batch=16, size=224),
    ]


def run_case(case: dict, repeats: int, steps: int, models: dict) -> dict:
    import vexplain as vx
    from captum.attr import IntegratedGradients

    model, weights, inputs = case_model(case["name"], case["batch"], case["size"], models)
    with torch.no_grad():
        targets = model(inputs).argmax(dim=1)
    target_list = [int(t) for t in targets]
    adapter = vx.adapt(model)
    captum_ig = IntegratedGradients(model)

    def plain():
        x = inputs.detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(model(x).gather(1, targets[:, None]).sum(), x)
        return grad

    def vexplain_ig():
        return vx.explain(adapter, inputs, method="integrated_gradients", targets=target_list, steps=steps)

    batch_size = vexplain_ig().options["batch_size"]

    def captum_batched():
        return captum_ig.attribute(inputs, target=targets, n_steps=steps, internal_batch_size=batch_size).detach()

    def captum_whole():
        return captum_ig.attribute(inputs, target=targets, n_steps=steps).detach()

    contenders = [("plain_fwd_bwd", plain), ("vexplain", vexplain_ig), ("captum_batched", captum_batched)]
    if case["name"] == "demo":  # all N·S points in one pass: a few GB of activations for ResNet-18 at 224²
        contenders.append(("captum_one_pass", captum_whole))
    print(f"\n== {case['name']} batch {case['batch']} at {case['size']}x{case['size']} (weights {weights}), steps {steps}, "
          f"path points per pass {batch_size}", flush=True)
    seconds, all_seconds = {}, {}
    for label, fn in contenders:
        seconds[label], all_seconds[label] = median_of(fn, repeats, warmup=1)
        print(f"{label:16s}: {seconds[label] * 1000:9.1f} ms", flush=True)
    ours, theirs = vexplain_ig().attributions, captum_batched().numpy()
    return {
        "case": case["name"],
        "weights": weights,
        "batch": case["batch"],
        "input_shape": list(inputs.shape[1:]),
        "steps": steps,
        "batch_size": batch_size,
        "seconds_median": seconds,
        "all_seconds": all_seconds,
        "ratio_vexplain_vs_captum_batched": seconds["vexplain"] / seconds["captum_batched"],
        "ratio_vexplain_vs_captum_one_pass": seconds["vexplain"] / seconds["captum_one_pass"] if "captum_one_pass" in seconds else None,
        "attributions_max_abs_diff": float(np.abs(ours - theirs).max()),
        "attributions_max_abs": float(np.abs(theirs).max()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, repeats=5, quick_repeats=2, quick_help="small sizes, few repeats, 16 steps")
    parser.add_argument("--steps", type=int, default=None, help="path points per image (default 50, quick 16)")
    args = parser.parse_args(argv)
    repeats = repeats_of(args)
    steps = args.steps or (16 if args.quick else 50)

    env = environment()
    print(f"torch {env['torch']} ({env['torch_threads']} threads), captum {env['captum']}, {env['cpu_count']} CPUs, "
          f"load average {env['load_average_at_start']}; median of {repeats} after 1 warm-up call")
    models: dict = {}
    results = [run_case(c, repeats, steps, models) for c in chosen_cases(cases(args.quick), args)]

    print("\nmedian ms; ratio = vexplain / Captum")
    headers = ["model", "batch", "steps", "points/pass", "plain fwd+bwd", "vexplain", "captum (same batches)", "captum (one pass)",
               "vx/captum same", "vx/captum one", "max|diff|", "max|attr|"]
    rows = []
    for r in results:
        s = r["seconds_median"]
        one_pass = s.get("captum_one_pass")
        rows.append([r["case"], r["batch"], r["steps"], r["batch_size"], f"{s['plain_fwd_bwd'] * 1e3:.1f}", f"{s['vexplain'] * 1e3:.1f}",
                     f"{s['captum_batched'] * 1e3:.1f}", "–" if one_pass is None else f"{one_pass * 1e3:.1f}",
                     f"{r['ratio_vexplain_vs_captum_batched']:.2f}x",
                     "–" if r["ratio_vexplain_vs_captum_one_pass"] is None else f"{r['ratio_vexplain_vs_captum_one_pass']:.2f}x",
                     r["attributions_max_abs_diff"], r["attributions_max_abs"]])
    print_table(headers, rows)
    write_results(args.json, "integrated_gradients", quick=args.quick, repeats=repeats, steps=steps, environment=env, results=results)
    return 0 if all(agrees(r["attributions_max_abs_diff"], r["attributions_max_abs"]) for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
