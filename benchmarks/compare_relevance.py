"""Relevance propagation (LRP, excitation backprop) against Zennit, Captum and TorchRay in the same run.

Run from the repository root::

    python benchmarks/compare_relevance.py [--quick] [--json results.json] [--repeats R] [--method NAME ...]

On torchvision's ResNet-18 (random seeded weights, BatchNorm statistics away from the identity;
224², 112² with ``--quick``), batch 1, it times, after one warm-up call, the median of ``R`` calls
of ``vx.explain(adapter, x, method, ...)`` (adapter made once) and of the reference on the same
input and target, interleaved (one call of each per round, so a load change hits both), and prints the ratio ``vexplain / reference`` and the max |difference|:

* LRP composites vs Zennit 0.5.1 (``ResNetCanonizer``: merged BatchNorm, ``Sum`` residuals; output
  relevance one_hot · y_t). Zennit's 1e-6 stabilizer also enters its residual-sum rule, where
  vexplain's z-rule is unstabilized, so the maps differ by about 1e-4 of their peak.
* LRP epsilon vs Captum's ``LRP`` on a copy whose blocks have a second ReLU module (Captum refuses
  a module called twice); Captum gives a residual sum's relevance to both terms in full, so the
  maps differ by design (the column shows the difference anyway).
* excitation backprop and its contrastive variant at ``layer2`` vs TorchRay 1.0.0.2 on a copy
  patched by its ``update_resnet`` (its skip sum).

Zennit and TorchRay import torchvision; beside the CPU torch build that needs the schema
workaround of ``tests/pgc_reference.py`` (applied here only on that exact error).
"""
from __future__ import annotations

import copy
import importlib
import sys
from pathlib import Path
from types import ModuleType

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

import statistics

from benchmarks.common import bench_parser, environment, interleaved_rounds, print_table, repeats_of, timed, write_results

MISSING_OP = "operator torchvision::nms does not exist"
_KEPT: list = []

#: method label → (vexplain method, vexplain options, reference)
CASES = {
    "lrp epsilon_plus_flat": ("lrp", {"composite": "epsilon_plus_flat"}, "zennit"),
    "lrp epsilon_gamma_box": ("lrp", {"composite": "epsilon_gamma_box", "low": -3.0, "high": 3.0}, "zennit"),
    "lrp epsilon_alpha2_beta1": ("lrp", {"composite": "epsilon_alpha2_beta1"}, "zennit"),
    "lrp epsilon": ("lrp", {"composite": "epsilon", "epsilon": 1e-9}, "captum"),
    "excitation_backprop": ("excitation_backprop", {"layer": "layer2"}, "torchray"),
    "contrastive_excitation_backprop": ("contrastive_excitation_backprop", {"layer": "layer2"}, "torchray"),
}


def imported(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except RuntimeError as error:
        if MISSING_OP not in str(error) or _KEPT:
            raise
        for loaded in [n for n in sys.modules if n.split(".")[0] in ("torchvision", name.split(".")[0])]:
            del sys.modules[loaded]
        library = torch.library.Library("torchvision", "DEF")
        library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _KEPT.append(library)
        return importlib.import_module(name)


def torchvision_resnet18(seed: int = 0) -> torch.nn.Module:
    models = imported("torchvision.models")
    torch.manual_seed(seed)
    model = models.resnet18()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.0, generator=generator)
                module.bias.normal_(0.0, 0.1, generator=generator)
                module.running_mean.normal_(0.0, 0.1, generator=generator)
                module.running_var.uniform_(0.5, 1.5, generator=generator)
    return model.eval()


def zennit_call(model, inputs, target: int, options: dict):
    composites = imported("zennit.composites")
    canonizers = imported("zennit.torchvision")
    attribution = imported("zennit.attribution")
    name = options["composite"]
    if name == "epsilon_plus_flat":
        composite = composites.EpsilonPlusFlat(canonizers=[canonizers.ResNetCanonizer()])
    elif name == "epsilon_gamma_box":
        composite = composites.EpsilonGammaBox(low=options["low"], high=options["high"], canonizers=[canonizers.ResNetCanonizer()])
    else:
        composite = composites.EpsilonAlpha2Beta1(canonizers=[canonizers.ResNetCanonizer()])

    def call():
        with attribution.Gradient(model=model, composite=composite) as attributor:
            with torch.no_grad():
                score = model(inputs)[0, target]
            seed = torch.zeros(1, 1000)
            seed[0, target] = score
            return attributor(inputs, seed)[1]

    return call


def separate_relus(model: torch.nn.Module) -> torch.nn.Module:
    from benchmarks.compare_captum_family import separate_relus as twin

    return twin(model)


def reference_call(label: str, model, inputs, target: int) -> tuple:
    """The reference's call and what to compare it with (``attributions`` or ``layer_maps``)."""
    _, options, library = CASES[label]
    if library == "zennit":
        return zennit_call(model, inputs, target, options), "attributions"
    if library == "captum":
        import captum.attr as ca

        twin = separate_relus(model)
        return (lambda: ca.LRP(twin).attribute(inputs, target=target)), "attributions"
    excitation = imported("torchray.attribution.excitation_backprop")
    patched = excitation.update_resnet(copy.deepcopy(model))
    if label == "excitation_backprop":
        return (lambda: excitation.excitation_backprop(patched, inputs, target, saliency_layer="layer2")[:, 0]), "layer_maps"
    return (lambda: excitation.contrastive_excitation_backprop(patched, inputs, target, saliency_layer="layer2", contrast_layer="layer4", classifier_layer="fc")[:, 0]), "layer_maps"


def run(label: str, size: int, repeats: int, model) -> dict:
    import vexplain as vx

    method, options, library = CASES[label]
    inputs = torch.randn((1, 3, size, size), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        target = int(model(inputs).argmax(dim=1)[0])
    adapter = vx.adapt(model)
    ours = lambda: vx.explain(adapter, inputs, method=method, targets=target, **options)  # noqa: E731
    reference, field = reference_call(label, model, inputs, target)
    print(f"\n== {label} vs {library}: resnet18 batch 1 at {size}x{size}", flush=True)
    contenders = {"vexplain": ours, library: reference}
    for fn in contenders.values():  # warm-up
        fn()
    times, _, _ = interleaved_rounds(contenders, repeats, lambda fn: (timed(fn)[0], 0.0, None))
    seconds = {who: statistics.median(values) for who, values in times.items()}
    mine = getattr(ours(), field)
    theirs = reference().detach().numpy()
    return {
        "case": label, "reference": library, "input_shape": [3, size, size], "options": options,
        "seconds_median": seconds, "ratio": seconds["vexplain"] / seconds[library],
        "max_abs_diff": float(np.abs(mine - theirs).max()), "max_abs": float(np.abs(theirs).max()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, repeats=3, quick_repeats=1, quick_help="112² input, one timed call", cases=False)
    parser.add_argument("--method", action="append", choices=list(CASES), help="run only this case; repeatable")
    args = parser.parse_args(argv)
    repeats, size = repeats_of(args), 112 if args.quick else 224
    env = environment()
    print(f"torch {env['torch']} ({env['torch_threads']} threads), {env['cpu_count']} CPUs, "
          f"load average {env['load_average_at_start']}; median of {repeats} after 1 warm-up call")
    model = torchvision_resnet18()
    results = [run(label, size, repeats, model) for label in (args.method or CASES)]
    print("\nseconds (median); ratio = vexplain / reference")
    rows = [[r["case"], r["reference"], f"{r['seconds_median']['vexplain']:.3f}", f"{r['seconds_median'][r['reference']]:.3f}",
             f"{r['ratio']:.2f}x", f"{r['max_abs_diff']:.1e} of {r['max_abs']:.1e}"] for r in results]
    print_table(["case", "reference", "vexplain s", "reference s", "vx/ref", "max|diff|"], rows)
    write_results(args.json, "relevance", quick=args.quick, repeats=repeats, environment=env, results=results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
