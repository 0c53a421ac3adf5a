"""The pytorch-grad-cam and torchcam variants (issue 14): vexplain against the reference library's time.

Run from the repository root (needs ``grad-cam==1.5.7`` and ``torchcam==0.5.0``, see tests/pgc_reference.py)::

    python benchmarks/compare_cam_variants.py [--quick] [--case resnet18-1] [--size S] [--json out.json] [--repeats R] [--methods a,b]

For each (model, batch) with top-class targets, at the model's last feature map, each contender is
timed as the median of R calls after one warm-up: ``vx.explain(adapter, x, method, **options)``
against the reference class called on the same input with the same targets (pytorch-grad-cam:
``GradCAMElementWise``, ``EigenGradCAM``, ``KPCA_CAM``, ``GradCAM(eigen_smooth)``,
``GradCAM(aug_smooth)``, ``FullGrad``, ``ShapleyCAM``, ``DeepFeatureFactorization``; torchcam:
``SmoothGradCAMpp``). FullGrad runs with ``postprocess="per_channel"`` (pytorch-grad-cam's scaling)
and is compared; ShapleyCAM is compared with logit targets; DFF is timed at batch 1 only against
pytorch-grad-cam's factorisation of that image (k = 5; at larger batches pytorch-grad-cam factorises
the whole batch as one matrix, a different computation) and compared on min-max scaled concept maps.
SS-CAM and IS-CAM (torchcam ``SSCAM`` / ``ISCAM``) run at batch 1 with ``samples`` =
``num_samples`` = 2 (each sample is a Score-CAM: 512 masked forwards at layer4); their maps differ
by the noise (SS-CAM) and torchcam's cumulative coefficients (IS-CAM; agreement after the same
noise and coefficients is in tests/test_cams_score_variants.py), so only times are compared. Ratio = vexplain / reference (< 1 is
faster). max|diff| compares the min-max scaled maps where the definitions coincide (element-wise
Grad-CAM, aug_smooth); the eigen methods differ by the SVD's sign and Smooth Grad-CAM++ by
torchcam's departures (see their docstrings), so only their times are compared.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import numpy as np
import torch

from benchmarks.common import agrees, bench_parser, chosen_cases, environment, median_of, print_table, repeats_of, write_results
from benchmarks.models import case_model


#: SS-CAM / IS-CAM samples on both sides: each is SCORE_SAMPLES Score-CAMs (512 masked forwards each at layer4)
SCORE_SAMPLES = 2


def cases(quick: bool) -> list[dict]:
    if quick:
        return [dict(name="resnet18", batch=1, size=64)]
    return [dict(name="resnet18", batch=1, size=224), dict(name="resnet18", batch=8, size=224)]


def run_case(case: dict, repeats: int, models: dict, methods: tuple[str, ...] = ()) -> list[dict]:
    import vexplain as vx
    from pgc_reference import pytorch_grad_cam

    pgc = pytorch_grad_cam()
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, weights, inputs = case_model(case["name"], case["batch"], case["size"], models)
    with torch.no_grad():
        targets = [int(t) for t in model(inputs).argmax(dim=1)]
    adapter = vx.adapt(model)
    layer = adapter.default_cam_layer(inputs[:1])
    module = model.get_submodule(layer)
    print(f"\n== {case['name']} batch {case['batch']} at {case['size']}x{case['size']} ({weights}), layer '{layer}'", flush=True)

    def pgc_call(cls, **flags):
        def call():
            with cls(model=model, target_layers=[module]) as cam:
                return cam(input_tensor=inputs, targets=[ClassifierOutputTarget(t) for t in targets], **flags)
        return call

    def torchcam_call(name: str, **kwargs):
        def call():
            import torchcam.methods  # imported here so --methods can skip torchcam

            with getattr(torchcam.methods, name)(model, target_layer=layer, input_shape=tuple(inputs.shape[1:]), **kwargs) as extractor:
                if name == "SmoothGradCAMpp":  # its hooks draw the noisy inputs and backpropagate themselves
                    model(inputs)
                    return extractor(class_idx=targets)[0].detach().numpy()
                with torch.no_grad():
                    scores = model(inputs)
                return extractor(class_idx=targets, scores=scores)[0].detach().numpy()
        return call

    def fullgrad_call():  # FullGrad takes every bias layer; target_layers=[] avoids its warning
        return pgc.FullGrad(model=model, target_layers=[])(input_tensor=inputs, targets=[ClassifierOutputTarget(t) for t in targets])

    def dff_call():
        from pytorch_grad_cam import DeepFeatureFactorization

        return DeepFeatureFactorization(model=model, target_layer=module, computation_on_concepts=model.fc)(inputs, n_components=5)[1][0]

    def dff_maps(exp):
        from vexplain.core.postprocess import upsample
        from vexplain.plugins.cam_base import minmax_last2

        return upsample(minmax_last2(torch.from_numpy(exp.extras["concept_layer_maps"][0])), tuple(inputs.shape[2:])).numpy()

    contenders = [
        ("gradcam_elementwise", {}, pgc_call(pgc.GradCAMElementWise), "pytorch-grad-cam", True),
        ("eigengradcam", {}, pgc_call(pgc.EigenGradCAM), "pytorch-grad-cam", False),
        ("kpcacam", {}, pgc_call(pgc.KPCA_CAM), "pytorch-grad-cam", False),
        ("gradcam", {"eigen_smooth": True}, pgc_call(pgc.GradCAM, eigen_smooth=True), "pytorch-grad-cam", False),
        ("gradcam", {"aug_smooth": True}, pgc_call(pgc.GradCAM, aug_smooth=True), "pytorch-grad-cam", True),
        ("smooth_gradcam_plusplus", {}, torchcam_call("SmoothGradCAMpp"), "torchcam", False),
        ("fullgrad", {"postprocess": "per_channel"}, fullgrad_call, "pytorch-grad-cam", True),
        ("shapleycam", {}, pgc_call(pgc.ShapleyCAM), "pytorch-grad-cam", True),
    ]
    if case["batch"] == 1:
        contenders.append(("deep_feature_factorization", {"concepts": 5}, dff_call, "pytorch-grad-cam", True))
        contenders.append(("sscam", {"samples": SCORE_SAMPLES}, torchcam_call("SSCAM", num_samples=SCORE_SAMPLES), "torchcam", False))
        contenders.append(("iscam", {"samples": SCORE_SAMPLES}, torchcam_call("ISCAM", num_samples=SCORE_SAMPLES), "torchcam", False))
    rows = []
    for method, options, reference, library, comparable in contenders:
        if methods and method not in methods:
            continue
        ours = lambda: vx.explain(adapter, inputs, method=method, targets=targets, **options)
        vx_seconds, _ = median_of(ours, repeats, warmup=1)
        ref_seconds, _ = median_of(reference, repeats, warmup=1)
        diff = None
        if comparable:
            exp = ours()
            mine = exp.maps if options.get("aug_smooth") else dff_maps(exp) if method == "deep_feature_factorization" else exp.normalized("minmax")
            diff = float(np.abs(mine - reference()).max())
        label = method + "".join(f" {k}" for k in options)
        print(f"{label:36s}: vexplain {vx_seconds * 1e3:9.1f} ms, {library} {ref_seconds * 1e3:9.1f} ms", flush=True)
        rows.append({"case": case["name"], "batch": case["batch"], "size": case["size"], "method": label, "library": library,
                     "vexplain_s": vx_seconds, "reference_s": ref_seconds, "ratio": vx_seconds / ref_seconds, "max_abs_diff": diff})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, repeats=3, quick_repeats=1, quick_help="ResNet-18 shape at 64x64, one timed call")
    parser.add_argument("--methods", default="", help="comma-separated method names to run (default: all)")
    parser.add_argument("--size", type=int, default=None, help="input side for every case (default: 224, quick 64)")
    args = parser.parse_args(argv)
    methods = tuple(name for name in args.methods.split(",") if name)
    repeats = repeats_of(args)
    env = environment()
    print(f"torch {env['torch']} ({env['torch_threads']} threads), {env['cpu_count']} CPUs, load average {env['load_average_at_start']}")
    models: dict = {}
    chosen = [dict(c, size=args.size or c["size"]) for c in chosen_cases(cases(args.quick), args)]
    results = [row for c in chosen for row in run_case(c, repeats, models, methods)]
    print("\nms (median); ratio = vexplain / reference; max|diff| of min-max scaled maps where definitions coincide")
    print_table(["model", "batch", "method", "reference", "vexplain", "reference ms", "ratio", "max|diff|"],
                [[r["case"], r["batch"], r["method"], r["library"], f"{r['vexplain_s'] * 1e3:.1f}", f"{r['reference_s'] * 1e3:.1f}",
                  f"{r['ratio']:.2f}x", "-" if r["max_abs_diff"] is None else r["max_abs_diff"]] for r in results])
    write_results(args.json, "cam_variants", quick=args.quick, repeats=repeats, environment=env, results=results)
    return 0 if all(agrees(r["max_abs_diff"]) for r in results if r["max_abs_diff"] is not None) else 1


if __name__ == "__main__":
    raise SystemExit(main())
