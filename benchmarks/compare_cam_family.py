"""Score-CAM and Ablation-CAM: vexplain against the plain ways of computing them.

Run from the repository root::

    python benchmarks/compare_cam_family.py [--quick] [--json results.json] [--repeats R]

For each (model, batch) with inputs x and top-class targets t, at the default CAM layer (C channels):

* Score-CAM, ``vexplain``: ``vx.explain(adapter, x, "scorecam")`` (N·C masked inputs in batches
  through ONNX Runtime), against ``plain loop``: N·C torch forward passes of one masked image each
  (the same masks: upsampled, min-max scaled activations), weights softmax over channels;
* Ablation-CAM, ``vexplain``: ``vx.explain(adapter, x, "ablationcam")`` on the PyTorch model (forward
  hook, only the network after the layer runs on the batch of ablated activations) and on the
  model exported to ONNX (graph split at the layer), against ``full loop``: the whole network run
  once per ablated channel (a hook zeroing that channel), and ``full batched``: the whole network
  on the input repeated 32 times per batch of 32 ablated channels (pytorch-grad-cam's way);

and prints the ratios ``plain / vexplain`` with the max |difference| of the layer maps (the plain
ways' maps are computed from their own scores with the same formula). Timings are the median of
``R`` calls after one warm-up call (the plain loops are timed once, without warm-up, when slow).
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.common import agrees, bench_parser, chosen_cases, environment, median_of, print_table, repeats_of, timed, write_results
from benchmarks.models import case_model


def cases(quick: bool) -> list[dict]:
    if quick:
        return [dict(name="demo", batch=1, size=64), dict(name="demo", batch=16, size=64), dict(name="resnet18", batch=1, size=64)]
    return [dict(name="demo", batch=1, size=64), dict(name="demo", batch=16, size=64),
            dict(name="resnet18", batch=1, size=224), dict(name="resnet18", batch=16, size=224)]


def score_cam_loop(model, inputs, acts, targets) -> torch.Tensor:
    """Layer maps from N·C forward passes of one masked image each."""
    n, c = acts.shape[:2]
    scores = torch.empty(n, c)
    with torch.no_grad():
        for i in range(n):
            up = F.interpolate(acts[i : i + 1], size=tuple(inputs.shape[2:]), mode="bilinear", align_corners=False)[0]
            for k in range(c):
                low, high = up[k].min(), up[k].max()
                mask = (up[k] - low) / (high - low + 1e-8)
                scores[i, k] = model((inputs[i] * mask)[None])[0, targets[i]]
    weights = torch.softmax(scores, dim=1)
    return torch.relu(torch.einsum("nc,nchw->nhw", weights, acts))


def ablated_scores_full(model, module, inputs, targets, channels: int, per_batch: int) -> torch.Tensor:
    """``(N, C)`` target scores of the whole network with each of the ``channels`` channels of
    ``module``'s output zeroed, ``per_batch`` channels per forward pass (the input repeated)."""
    zeroed: list[torch.Tensor] = []

    def zero(mod, args, output):
        output = output.clone()
        output[torch.arange(len(zeroed[0])), zeroed[0]] = 0
        return output

    handle = module.register_forward_hook(zero)
    rows = []
    try:
        with torch.no_grad():
            for i in range(len(inputs)):
                row = []
                for start in range(0, channels, per_batch):
                    stop = min(start + per_batch, channels)
                    zeroed[:] = [torch.arange(start, stop)]
                    row.append(model(inputs[i : i + 1].expand(stop - start, *inputs.shape[1:]))[:, targets[i]])
                rows.append(torch.cat(row))
    finally:
        handle.remove()
    return torch.stack(rows)


def ablation_maps(base: torch.Tensor, ablated: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
    weights = (base[:, None] - ablated) / base[:, None]
    return torch.relu(torch.einsum("nc,nchw->nhw", weights, acts))


def run_case(case: dict, repeats: int, models: dict) -> dict:
    import vexplain as vx
    from vexplain.adapters.onnx_export import export_onnx

    model, weights, inputs = case_model(case["name"], case["batch"], case["size"], models)
    with torch.no_grad():
        scores = model(inputs)
    targets = scores.argmax(dim=1)
    target_list = [int(t) for t in targets]
    adapter = vx.adapt(model)
    layer = adapter.default_cam_layer(inputs[:1])
    activation = adapter.activations(inputs, layer).activations
    channels = activation.shape[1]
    onnx_adapter = vx.adapt(export_onnx(model, tuple(inputs.shape[1:])))
    onnx_layer = onnx_adapter.default_cam_layer()
    print(f"\n== {case['name']} batch {case['batch']} at {case['size']}x{case['size']} (weights {weights}), layer '{layer}' ({channels} channels)", flush=True)

    seconds: dict = {}
    results: dict = {}

    def measure(label, fn, slow=False):
        if slow and repeats <= 3:
            seconds[label], results[label] = timed(fn)
        else:
            seconds[label], _ = median_of(fn, repeats, warmup=1)
            results[label] = fn()
        print(f"{label:28s}: {seconds[label] * 1000:10.1f} ms", flush=True)

    measure("scorecam_vexplain", lambda: vx.explain(adapter, inputs, method="scorecam", targets=target_list).layer_maps)
    measure("scorecam_plain_loop", lambda: score_cam_loop(model, inputs, activation, target_list), slow=True)
    module = model.get_submodule(layer)
    base = scores.gather(1, targets[:, None])[:, 0]
    measure("ablationcam_vexplain_torch", lambda: vx.explain(adapter, inputs, method="ablationcam", targets=target_list).layer_maps)
    measure("ablationcam_vexplain_onnx", lambda: vx.explain(onnx_adapter, inputs, method="ablationcam", targets=target_list, layer=onnx_layer).layer_maps)
    measure("ablationcam_full_loop", lambda: ablation_maps(base, ablated_scores_full(model, module, inputs, target_list, channels, 1), activation), slow=True)
    measure("ablationcam_full_batched", lambda: ablation_maps(base, ablated_scores_full(model, module, inputs, target_list, channels, 32), activation), slow=True)

    def diff(a, b) -> float:
        return float(np.abs(np.asarray(a) - np.asarray(b)).max())

    peak = float(np.abs(np.asarray(results["ablationcam_vexplain_torch"])).max())
    return {
        "case": case["name"], "weights": weights, "batch": case["batch"], "input_shape": list(inputs.shape[1:]),
        "layer": layer, "channels": channels, "seconds": seconds,
        "scorecam_speedup_vs_loop": seconds["scorecam_plain_loop"] / seconds["scorecam_vexplain"],
        "ablationcam_speedup_vs_full_loop": seconds["ablationcam_full_loop"] / seconds["ablationcam_vexplain_torch"],
        "ablationcam_speedup_vs_full_batched": seconds["ablationcam_full_batched"] / seconds["ablationcam_vexplain_torch"],
        "ablationcam_onnx_speedup_vs_full_loop": seconds["ablationcam_full_loop"] / seconds["ablationcam_vexplain_onnx"],
        "scorecam_max_abs_diff": diff(results["scorecam_vexplain"], results["scorecam_plain_loop"]),
        "scorecam_peak": float(np.abs(np.asarray(results["scorecam_vexplain"])).max()),
        "ablationcam_max_abs_diff_torch": diff(results["ablationcam_vexplain_torch"], results["ablationcam_full_loop"]),
        "ablationcam_max_abs_diff_onnx": diff(results["ablationcam_vexplain_onnx"], results["ablationcam_full_loop"]),
        "ablationcam_peak": peak,
        "ablation_engine": adapter.replacement_engine(layer),
    }


def main(argv: list[str] | None = None) -> int:
    args = bench_parser(__doc__, repeats=3, quick_repeats=1, quick_help="small sizes, one timed call").parse_args(argv)
    repeats = repeats_of(args)

    env = environment()
    print(f"torch {env['torch']} ({env['torch_threads']} threads), onnxruntime {env['onnxruntime']}, {env['cpu_count']} CPUs, "
          f"load average {env['load_average_at_start']}")
    models: dict = {}
    results = [run_case(c, repeats, models) for c in chosen_cases(cases(args.quick), args)]

    print("\nScore-CAM: ms; ratio = plain loop / vexplain; max|diff| of layer maps (peak)")
    print_table(["model", "batch", "C", "vexplain", "plain loop", "ratio", "max|diff|", "peak"],
                [[r["case"], r["batch"], r["channels"], f"{r['seconds']['scorecam_vexplain'] * 1e3:.1f}",
                  f"{r['seconds']['scorecam_plain_loop'] * 1e3:.1f}", f"{r['scorecam_speedup_vs_loop']:.1f}x",
                  r["scorecam_max_abs_diff"], r["scorecam_peak"]] for r in results])
    print("\nAblation-CAM: ms; ratios = full network / vexplain (torch hook); max|diff| vs the full loop's maps (peak)")
    print_table(["model", "batch", "C", "vx torch", "vx onnx", "full loop", "full batched", "loop/vx", "batched/vx", "loop/vx onnx",
                 "max|diff| torch", "max|diff| onnx", "peak", "hook mode"],
                [[r["case"], r["batch"], r["channels"], f"{r['seconds']['ablationcam_vexplain_torch'] * 1e3:.1f}",
                  f"{r['seconds']['ablationcam_vexplain_onnx'] * 1e3:.1f}", f"{r['seconds']['ablationcam_full_loop'] * 1e3:.1f}",
                  f"{r['seconds']['ablationcam_full_batched'] * 1e3:.1f}", f"{r['ablationcam_speedup_vs_full_loop']:.1f}x",
                  f"{r['ablationcam_speedup_vs_full_batched']:.1f}x", f"{r['ablationcam_onnx_speedup_vs_full_loop']:.1f}x",
                  r["ablationcam_max_abs_diff_torch"], r["ablationcam_max_abs_diff_onnx"], r["ablationcam_peak"], r["ablation_engine"]] for r in results])
    write_results(args.json, "cam_family", quick=args.quick, repeats=repeats, environment=env, results=results)
    exact = all(agrees(r["scorecam_max_abs_diff"], r["scorecam_peak"]) and agrees(r["ablationcam_max_abs_diff_torch"], r["ablationcam_peak"])
                and agrees(r["ablationcam_max_abs_diff_onnx"], r["ablationcam_peak"]) for r in results)
    return 0 if exact else 1


if __name__ == "__main__":
    raise SystemExit(main())
