"""The Captum family (DeepLift, DeepLiftShap, Deconvolution, GradientShap, feature ablation, Shapley
value sampling, KernelSHAP, LIME): vexplain against Captum in the same run.

Run from the repository root::

    python benchmarks/compare_captum_family.py [--quick] [--json results.json] [--repeats R] [--method NAME ...]

On the ResNet-18-shaped model (224², 112² with ``--quick``), batch 1, it times, after one warm-up
call, the median of ``R`` calls of ``vx.explain(adapter, x, method, ...)`` (adapter made once) and
of the Captum class on the same input with the same draws (seeds, baselines, feature mask: an
8 × 8 grid), Captum's feature methods with ``perturbations_per_eval`` = vexplain's derived batch
size, and prints the ratios ``vexplain / Captum`` and the max |difference|. Captum's DeepLift
refuses a model that calls one ReLU module twice (every ResNet block does), so Captum runs on a
copy whose blocks have a second ReLU module; even then its hooks lose summation to delta where the
stem's ReLU feeds the max pooling, so DeepLift's maps differ by design there and the table shows
both completeness gaps instead of an agreement check.
"""
from __future__ import annotations

import copy
import sys
import types
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from benchmarks.common import agrees, bench_parser, environment, median_of, print_table, repeats_of, write_results
from benchmarks.models import case_model

#: vexplain options per method (sample counts cut so a 2-core run takes minutes, not hours)
SETTINGS = {
    "deeplift": {},
    "deeplift_shap": {"references": 4},
    "deconvolution": {},
    "gradient_shap": {"samples": 16, "references": 4},
    "feature_ablation": {},
    "shapley_sampling": {"samples": 2},
    "kernel_shap": {"samples": 256},
    "lime": {"samples": 256},
}


def separate_relus(model: torch.nn.Module) -> torch.nn.Module:
    """A copy whose ResNet blocks call a second ReLU module for their output (same function)."""
    twin = copy.deepcopy(model)
    for module in twin.modules():
        if hasattr(module, "conv2") and hasattr(module, "relu"):
            module.relu_out = torch.nn.ReLU(inplace=True)

            def forward(self, x):
                identity = x if self.downsample is None else self.downsample(x)
                out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
                return self.relu_out(out + identity)

            module.forward = types.MethodType(forward, module)
    return twin


def contenders(method: str, model, inputs, target: int, adapter, references) -> tuple:
    """``(vexplain call, Captum call, compare attributions?)``; each returns a numpy map/attribution."""
    import captum.attr as ca
    import vexplain as vx
    from vexplain.plugins._superpixels import grid_labels

    options = {k: v for k, v in SETTINGS[method].items() if k != "references"}
    if method in ("deeplift_shap", "gradient_shap"):
        options["baselines"] = references
    ours = lambda: vx.explain(adapter, inputs, method=method, targets=target, **options)  # noqa: E731
    mask = grid_labels(tuple(inputs.shape[2:]), 8, inputs.device)[None, None]
    batch = ours().options.get("batch_size", 1)
    if method == "deeplift":
        return ours, lambda: ca.DeepLift(separate_relus(model)).attribute(inputs, target=target, return_convergence_delta=True), "attributions"
    if method == "deeplift_shap":
        return ours, lambda: ca.DeepLiftShap(separate_relus(model)).attribute(inputs, baselines=references, target=target, return_convergence_delta=True), "attributions"
    if method == "deconvolution":
        return ours, lambda: ca.Deconvolution(model).attribute(inputs, target=target), "attributions"
    if method == "gradient_shap":
        def captum():
            np.random.seed(0)
            torch.manual_seed(0)
            return ca.GradientShap(model).attribute(inputs, baselines=references, n_samples=options["samples"], target=target)
        return ours, captum, "attributions"
    if method == "feature_ablation":
        return ours, lambda: ca.FeatureAblation(model).attribute(inputs, target=target, feature_mask=mask, perturbations_per_eval=batch)[:, 0], "maps"
    seeded = {
        "shapley_sampling": lambda: ca.ShapleyValueSampling(model).attribute(inputs, target=target, feature_mask=mask, n_samples=options["samples"], perturbations_per_eval=batch),
        "kernel_shap": lambda: ca.KernelShap(model).attribute(inputs, target=target, feature_mask=mask, n_samples=options["samples"], perturbations_per_eval=batch),
        "lime": lambda: ca.Lime(model, interpretable_model=lasso()).attribute(inputs, target=target, feature_mask=mask, n_samples=options["samples"], perturbations_per_eval=batch),
    }[method]

    def captum():
        torch.manual_seed(0)
        return seeded()[:, 0]

    return ours, captum, "maps"


def lasso():
    from captum._utils.models.linear_model import SkLearnLasso

    return SkLearnLasso(alpha=0.01, tol=1e-12, max_iter=1_000_000)


def run(method: str, size: int, repeats: int, models: dict) -> dict:
    import vexplain as vx

    model, weights, inputs = case_model("resnet18", 1, size, models)
    with torch.no_grad():
        target = int(model(inputs).argmax(dim=1)[0])
    references = torch.randn((SETTINGS[method].get("references", 1), *inputs.shape[1:]), generator=torch.Generator().manual_seed(1))
    adapter = vx.adapt(model)
    ours, captum, field = contenders(method, model, inputs, target, adapter, references)
    print(f"\n== {method}: resnet18 batch 1 at {size}x{size}, {SETTINGS[method]}", flush=True)
    seconds = {}
    for label, fn in (("vexplain", ours), ("captum", captum)):
        seconds[label], _ = median_of(fn, repeats, warmup=1)
        print(f"{label:9s}: {seconds[label]:8.2f} s", flush=True)
    exp, reference = ours(), captum()
    gaps = None
    if isinstance(reference, tuple):  # DeepLift: (attributions, Captum's convergence delta)
        reference, delta = reference
        gaps = (max(abs(g) for g in exp.options["completeness_gap"]), float(delta.abs().max()))
    reference = reference.detach().numpy()
    mine = getattr(exp, field)
    return {
        "method": method, "weights": weights, "input_shape": list(inputs.shape[1:]), "settings": SETTINGS[method],
        "seconds_median": seconds, "ratio_vexplain_vs_captum": seconds["vexplain"] / seconds["captum"],
        "max_abs_diff": float(np.abs(mine - reference).max()), "max_abs": float(np.abs(reference).max()),
        "completeness_gap_vexplain_captum": gaps, "engine": exp.options.get("engine", "torch"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, repeats=3, quick_repeats=1, quick_help="112² input, one timed call", cases=False)
    parser.add_argument("--method", action="append", choices=list(SETTINGS), help="run only this method; repeatable")
    args = parser.parse_args(argv)
    repeats, size = repeats_of(args), 112 if args.quick else 224
    env = environment()
    print(f"torch {env['torch']} ({env['torch_threads']} threads), captum {env['captum']}, {env['cpu_count']} CPUs, "
          f"load average {env['load_average_at_start']}; median of {repeats} after 1 warm-up call")
    models: dict = {}
    results = [run(method, size, repeats, models) for method in (args.method or SETTINGS)]
    print("\nseconds (median); ratio = vexplain / Captum")
    rows = []
    for r in results:
        gaps = r["completeness_gap_vexplain_captum"]
        check = f"gap {gaps[0]:.1e} / {gaps[1]:.1e}" if gaps else f"{r['max_abs_diff']:.1e} of {r['max_abs']:.1e}"
        rows.append([r["method"], r["engine"], f"{r['seconds_median']['vexplain']:.2f}", f"{r['seconds_median']['captum']:.2f}",
                     f"{r['ratio_vexplain_vs_captum']:.2f}x", check])
    print_table(["method", "vexplain engine", "vexplain s", "captum s", "vx/captum", "max|diff| (or completeness gaps vx / captum)"], rows)
    write_results(args.json, "captum_family", quick=args.quick, repeats=repeats, environment=env, results=results)
    exact = [r for r in results if r["completeness_gap_vexplain_captum"] is None]
    return 0 if all(agrees(r["max_abs_diff"], r["max_abs"]) for r in exact) else 1


if __name__ == "__main__":
    raise SystemExit(main())
