"""Grad-CAM: vexplain against one plain forward + backward, and Captum ``LayerGradCam``.

Run from the repository root::

    python benchmarks/compare_gradcam.py [--quick] [--json results.json] [--repeats R]

For each (model, batch) it times, after warm-up, the median of ``R`` calls of

* ``plain fwd+bwd``: ``scores = model(x)``; ``torch.autograd.grad(scores[i, t_i].sum(), x)``
  (x requires grad): the cost floor of any gradient method;
* ``forward only``: ``model(x)`` under ``torch.no_grad()``, for scale;
* ``vx.explain(model, x, "gradcam")``: what a user writes (a new adapter per call);
* ``vx.explain(adapter, x, "gradcam")``: an adapter made once with ``vx.adapt(model)`` and reused;
* Captum ``LayerGradCam(model, layer).attribute(x, target, relu_attributions=True)`` followed by
  ``LayerAttribution.interpolate`` to the input size (bilinear), for reference;

and prints the ratios ``time / plain fwd+bwd``. It also checks that vexplain's layer maps equal
Captum's (max |diff|).
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from benchmarks.common import agrees, bench_parser, environment, median_of, print_table, repeats_of, write_results
from benchmarks.models import case_model


def cases(quick: bool) -> list[dict]:
    if quick:
        return [dict(name="demo", batch=16, size=64), dict(name="resnet18", batch=1, size=112)]
    return [dict(name="demo", batch=16, size=64), dict(name="resnet18", batch=1, size=224), dict(name="resnet18", batch=8, size=224)]


def run_case(case: dict, repeats: int, models: dict) -> dict:
    import vexplain as vx
    from captum.attr import LayerAttribution, LayerGradCam

    model, weights, inputs = case_model(case["name"], case["batch"], case["size"], models)
    with torch.no_grad():
        targets = model(inputs).argmax(dim=1)
    target_list = [int(t) for t in targets]
    adapter = vx.adapt(model)
    layer = adapter.default_cam_layer(inputs[:1])

    def plain():
        x = inputs.detach().clone().requires_grad_(True)
        scores = model(x)
        (grad,) = torch.autograd.grad(scores.gather(1, targets[:, None]).sum(), x)
        return grad

    def forward_only():
        with torch.no_grad():
            return model(inputs)

    def vexplain_model():
        return vx.explain(model, inputs, method="gradcam", targets=target_list)

    def vexplain_adapter():
        return vx.explain(adapter, inputs, method="gradcam", targets=target_list)

    gradcam = LayerGradCam(model, model.get_submodule(layer))

    def captum():
        layer_maps = gradcam.attribute(inputs, target=targets, relu_attributions=True)
        return LayerAttribution.interpolate(layer_maps, tuple(inputs.shape[2:]), interpolate_mode="bilinear").detach(), layer_maps.detach()

    print(f"\n== {case['name']} batch {case['batch']} at {case['size']}x{case['size']} (weights {weights}), layer '{layer}'", flush=True)
    seconds, all_seconds = {}, {}
    for label, fn in (("plain_fwd_bwd", plain), ("forward_only", forward_only), ("vexplain_model", vexplain_model), ("vexplain_adapter", vexplain_adapter), ("captum_layergradcam", captum)):
        seconds[label], all_seconds[label] = median_of(fn, repeats)
        print(f"{label:22s}: {seconds[label] * 1000:9.1f} ms", flush=True)
    exp = vexplain_adapter()
    _, captum_layer = captum()
    diff = float(np.abs(exp.layer_maps - captum_layer[:, 0].numpy()).max())
    return {
        "case": case["name"],
        "weights": weights,
        "batch": case["batch"],
        "input_shape": list(inputs.shape[1:]),
        "layer": layer,
        "seconds_median": seconds,
        "all_seconds": all_seconds,
        "ratios_vs_plain": {k: v / seconds["plain_fwd_bwd"] for k, v in seconds.items() if k != "plain_fwd_bwd"},
        "layer_maps_max_abs_diff_vs_captum": diff,
    }


def main(argv: list[str] | None = None) -> int:
    args = bench_parser(__doc__, repeats=7, quick_repeats=3, quick_help="small sizes, few repeats", cases=False).parse_args(argv)
    repeats = repeats_of(args)

    env = environment()
    print(f"torch {env['torch']} ({env['torch_threads']} threads), captum {env['captum']}, {env['cpu_count']} CPUs, "
          f"load average {env['load_average_at_start']}; median of {repeats} after 2 warm-up calls")
    models: dict = {}
    results = [run_case(c, repeats, models) for c in cases(args.quick)]

    print("\nmedian ms; ratio = time / plain forward+backward")
    headers = ["model", "batch", "plain fwd+bwd", "fwd only", "vx(model)", "vx(adapter)", "captum LayerGradCam",
               "vx(model)/plain", "vx(adapter)/plain", "captum/plain", "max|diff| layer maps"]
    rows = []
    for r in results:
        s, q = r["seconds_median"], r["ratios_vs_plain"]
        rows.append([r["case"], r["batch"], f"{s['plain_fwd_bwd'] * 1e3:.1f}", f"{s['forward_only'] * 1e3:.1f}", f"{s['vexplain_model'] * 1e3:.1f}",
                     f"{s['vexplain_adapter'] * 1e3:.1f}", f"{s['captum_layergradcam'] * 1e3:.1f}",
                     f"{q['vexplain_model']:.2f}x", f"{q['vexplain_adapter']:.2f}x", f"{q['captum_layergradcam']:.2f}x",
                     r["layer_maps_max_abs_diff_vs_captum"]])
    print_table(headers, rows)
    write_results(args.json, "gradcam", quick=args.quick, repeats=repeats, environment=env, results=results)
    return 0 if all(agrees(r["layer_maps_max_abs_diff_vs_captum"]) for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
