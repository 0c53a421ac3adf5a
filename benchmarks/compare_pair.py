"""PAIR saliency's methods and TorchRay's extremal perturbations: vexplain against the references
in the same run.

Run from the repository root::

    python benchmarks/compare_pair.py [--quick] [--size S] [--json results.json] [--repeats R]

On the ResNet-18-shaped model (random seeded weights) at 224² (112² with ``--quick``), one image,
or ``--size S``, it times the median of ``R`` calls (after one warm-up) of each method in vexplain and in its
reference, with the same model gradients (PAIR's ``call_model_function`` is the torch model's
input gradient, path points in the same batch size) and the same, shortened settings (the
defaults' cost grows linearly in them): Blur IG ``steps=20``, Guided IG ``steps=20``, XRAI with
``steps=10`` (PAIR's two-baseline IG) and extremal perturbation ``max_iter=10``. It prints the
times, the ratio vexplain / reference and the max |difference| of the results.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from benchmarks.common import bench_parser, environment, median_of, print_table, repeats_of, write_results
from benchmarks.models import case_model

SETTINGS = {"blur_ig": {"steps": 20}, "guided_ig": {"steps": 20}, "xrai": {"steps": 10}, "extremal_perturbation": {"max_iter": 10}}


def pair_gradients(model: torch.nn.Module, target: int):
    """PAIR's model interface: HWC batches in, d y_t / d x (HWC, float64) out."""
    from saliency.core import INPUT_OUTPUT_GRADIENTS

    def call(x_batch, call_model_args=None, expected_keys=None):
        x = torch.tensor(np.moveaxis(np.asarray(x_batch), -1, 1), dtype=torch.float32, requires_grad=True)
        (grad,) = torch.autograd.grad(model(x)[:, target].sum(), x)
        return {INPUT_OUTPUT_GRADIENTS: np.moveaxis(grad.double().numpy(), 1, -1)}

    return call


def numpy_quantile_shim():
    """PAIR 0.2.1's Guided IG calls ``np.quantile(interpolation=)``, which numpy 2 renamed ``method``."""
    import saliency.core.guided_ig as guided

    class Numpy:
        def __getattr__(self, name):
            return getattr(np, name)

        @staticmethod
        def quantile(a, q, interpolation="linear", **kwargs):
            return np.quantile(a, q, method=interpolation, **kwargs)

    guided.np = Numpy()


def references(model: torch.nn.Module, image: torch.Tensor, target: int, batch_size: int) -> dict:
    import saliency.core as pair
    from torchray.attribution.extremal_perturbation import extremal_perturbation

    hwc = np.moveaxis(image[0].numpy(), 0, -1).astype(np.float64)
    call = pair_gradients(model, target)
    flags = [p.requires_grad for p in model.parameters()]

    def torchray_ep():
        try:
            return extremal_perturbation(model, image, target, areas=[0.1], **SETTINGS["extremal_perturbation"])[0][:, 0].sum(0).numpy()
        finally:  # TorchRay turns requires_grad off on the parameters and leaves it so
            for p, flag in zip(model.parameters(), flags):
                p.requires_grad_(flag)

    return {
        "blur_ig": ("PAIR BlurIG", lambda: np.moveaxis(pair.BlurIG().GetMask(hwc, call, batch_size=batch_size, **SETTINGS["blur_ig"]), -1, 0).sum(0)),
        "guided_ig": ("PAIR GuidedIG", lambda: np.moveaxis(pair.GuidedIG().GetMask(hwc, call, x_steps=SETTINGS["guided_ig"]["steps"]), -1, 0).sum(0)),
        "xrai": ("PAIR XRAI", lambda: pair.XRAI().GetMask(hwc, call, batch_size=batch_size, extra_parameters=pair.XRAIParameters(steps=SETTINGS["xrai"]["steps"]))),
        "extremal_perturbation": ("TorchRay", torchray_ep),
    }


def main() -> None:
    import vexplain as vx

    parser = bench_parser(__doc__, repeats=3, quick_repeats=1, quick_help="112x112 instead of 224x224", cases=False)
    parser.add_argument("--size", type=int, default=None, help="image side (default 224, 112 with --quick)")
    args = parser.parse_args()
    repeats = repeats_of(args)
    size = args.size or (112 if args.quick else 224)
    numpy_quantile_shim()
    model, weights, image = case_model("resnet18", 1, size, {})
    with torch.no_grad():
        target = int(model(image).argmax())
    adapter = vx.adapt(model)
    batch_size = vx.explain(adapter, image, method="blur_ig", targets=target, steps=2).options["batch_size"]
    reference = references(model, image, target, batch_size)
    print(f"== resnet18-shaped ({weights}) at {size}x{size}, batch 1, path points per pass {batch_size}", flush=True)
    rows, results = [], []
    for method, settings in SETTINGS.items():
        label, theirs = reference[method]
        ours = lambda: vx.explain(adapter, image, method=method, targets=target, **settings).maps[0]
        ours_s, _ = median_of(ours, repeats, warmup=1)
        theirs_s, _ = median_of(theirs, repeats, warmup=1)
        diff = float(np.abs(ours() - theirs()).max())
        rows.append([method, label, f"{ours_s:.2f}", f"{theirs_s:.2f}", f"{ours_s / theirs_s:.2f}", f"{diff:.2e}"])
        results.append({"method": method, "reference": label, "settings": settings, "vexplain_s": ours_s, "reference_s": theirs_s, "max_abs_diff": diff})
        print(f"{method}: vexplain {ours_s:.2f} s, {label} {theirs_s:.2f} s, ratio {ours_s / theirs_s:.2f}, max |diff| {diff:.2e}", flush=True)
    print_table(["method", "reference", "vexplain s", "reference s", "ratio", "max |diff|"], rows)
    write_results(args.json, "compare_pair", environment=environment(), size=size, results=results)


if __name__ == "__main__":
    main()
