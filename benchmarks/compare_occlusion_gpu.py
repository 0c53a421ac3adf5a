"""Occlusion on a CUDA GPU: vexplain's engines and precisions against Captum's ``Occlusion``.

Run from the repository root on a machine with a GPU (and captum installed)::

    python benchmarks/compare_occlusion_gpu.py [--quick] [--repeats R] [--budget-s S] [--json out.json]

Cases: torchvision's ResNet-50 (random weights; where torchvision imports), the ResNet-18 and VGG
shapes of ``benchmarks/models.py`` at 224², window 16, strides 8 and 4, 1 and 8 images (VGG: 1),
and the demo model. Contenders, on the same inputs and targets, each warmed up once and then
timed ``--repeats`` rounds, interleaved (best kept; the GPU is synchronised around every call):

* Captum ``Occlusion`` at 256 and 1024 occluded images per forward pass (its
  ``perturbations_per_eval`` is that divided by the image count), the faster kept;
* exact: ``engine="incremental"`` and ``engine="torch"`` (batched full inference), float32;
* approximate: ``precision="bf16"`` and ``"fp16"`` on the incremental engine, ``"fp16"`` on torch.

It prints seconds, ``captum_best / contender``, peak GPU memory, the max |diff| of the float32
engines against Captum, and for reduced precision the max |diff| and per-image SSIM against the
float32 incremental map with ``exp.options["precision_error"]``. TF32 stays at PyTorch's defaults
(cuDNN convolutions may use it), as users run; the flags are printed. Results are written to
``--json`` after every case, so a run stopped by ``--budget-s`` or a time limit keeps what it did.
"""
from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from benchmarks.common import agrees, case_record, environment, interleaved_rounds, print_table, write_results
from benchmarks.models import case_model

CAPTUM_PPE = (256, 1024)
VEXPLAIN = {
    "incremental": dict(engine="incremental"),
    "torch": dict(engine="torch"),
    "incremental_bf16": dict(engine="incremental", precision="bf16"),
    "incremental_fp16": dict(engine="incremental", precision="fp16"),
    "torch_fp16": dict(engine="torch", precision="fp16"),
}
#: contenders of a --quick run (reduced precision is slow on most CPUs, where --quick is for)
QUICK = ("incremental", "torch", "incremental_fp16")
EXACT = ("incremental", "torch")


def cases(quick: bool, models: tuple[str, ...] = ("resnet50", "resnet18", "vgg", "demo")) -> list[dict]:
    """The goal case (stride 4) of each model first, so a run cut short keeps what matters most."""
    if quick:
        return [dict(name="demo", images=2, size=64, window=8, stride=4), dict(name="resnet18", images=1, size=112, window=16, stride=16)]
    listed = []
    for name in models:
        if name == "resnet50" and not _has_torchvision():
            continue
        if name == "demo":
            listed.append(dict(name="demo", images=8, size=64, window=8, stride=4))
            continue
        for stride in (4, 8):
            listed += [dict(name=name, images=n, size=224, window=16, stride=stride) for n in ((1,) if name == "vgg" else (1, 8))]
    return listed


def _has_torchvision() -> bool:
    try:
        import torchvision  # noqa: F401
    except Exception:
        return False
    return True


def _timed(fn, device: torch.device) -> tuple[float, float, object]:
    """``(seconds, peak GPU MB above the start (0 on the CPU), result)`` of one call, GPU synchronised."""
    gpu = device.type == "cuda"
    if gpu:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start_mb = torch.cuda.memory_allocated() / 2**20 if gpu else 0.0
    started = time.perf_counter()
    result = fn()
    if gpu:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    return seconds, (torch.cuda.max_memory_allocated() / 2**20 - start_mb) if gpu else 0.0, result


def forward_throughput(model: torch.nn.Module, size: int, device: torch.device, batch: int = 256, rounds: int = 5) -> float:
    """Images per second of a plain float32 forward at ``batch`` (the floor of full inference)."""
    x = torch.randn((batch, 3, size, size), device=device)
    with torch.no_grad():
        model(x)
        seconds, _, _ = _timed(lambda: [model(x) for _ in range(rounds)], device)
    return batch * rounds / seconds


def run_case(case: dict, repeats: int, models: dict, device: torch.device, names: tuple[str, ...]) -> dict:
    import vexplain as vx
    from captum.attr import Occlusion
    from vexplain.adapters.torch_precision import true_float32
    from vexplain.core.similarity import ssim

    model, weights, inputs = case_model(case["name"], case["images"], case["size"], models)
    model = model.to(device)
    inputs = inputs.to(device)
    channels, window, stride = inputs.shape[1], case["window"], case["stride"]
    with torch.no_grad():
        targets = model(inputs).argmax(dim=1)
    target_list = targets.tolist()
    occlusion = Occlusion(model)

    def vexplain(options):
        return lambda: vx.explain(model, inputs, method="occlusion", targets=target_list, window=window, stride=stride, **options)

    def captum(ppe: int):
        def run():
            with torch.no_grad():
                return occlusion.attribute(inputs, sliding_window_shapes=(channels, window, window), strides=(channels, stride, stride),
                                           baselines=0, target=targets, perturbations_per_eval=ppe).cpu()
        return run

    ppes = [max(1, p // len(inputs)) for p in CAPTUM_PPE]  # Captum runs images × perturbations_per_eval at once
    contenders = {name: vexplain(VEXPLAIN[name]) for name in names}
    contenders.update({f"captum_ppe_{p}": captum(p) for p in ppes})
    label = f"{case['name']} {len(inputs)}x{case['size']}² window {window} stride {stride}"
    print(f"\n== {label} (weights {weights})", flush=True)
    for name, fn in contenders.items():  # warm-up: tracing, cuDNN algorithm choice, allocator
        fn()
    times, memory, last = interleaved_rounds(contenders, repeats, lambda fn: _timed(fn, device))
    best = {name: min(t) for name, t in times.items()}
    captum_names = [n for n in contenders if n.startswith("captum")]
    best_captum = min(captum_names, key=best.get)
    reference = last[best_captum][:, 0].numpy()
    exact_map = last["incremental"].maps
    reduced = {}
    for name in names:
        if name in EXACT:
            continue
        maps = last[name].maps
        reduced[name] = {
            "max_abs_diff_vs_fp32": float(np.abs(maps - exact_map).max()),
            "ssim_per_image": [ssim(maps[i], exact_map[i]) for i in range(len(inputs))],
            "precision_error": last[name].options["precision_error"],
        }
    tf32_off = None
    if len(inputs) == 1:
        with true_float32():
            tf32_off = contenders["incremental"]().maps, contenders[best_captum]()[:, 0].numpy()
    return {
        **case_record(label, case, weights, len(inputs), last["incremental"]),
        "batch_size": last["incremental"].options["batch_size"],
        "incremental_work": last["incremental"].options.get("incremental_work"),
        "seconds": best,
        "all_seconds": times,
        "peak_gpu_mb": memory,
        "captum_best": best_captum,
        "ratios": {name: best[best_captum] / best[name] for name in names},
        "max_abs_diff_vs_captum": {name: float(np.abs(last[name].maps - reference).max()) for name in EXACT},
        "max_abs_reference": float(np.abs(reference).max()),
        "max_abs_diff_vs_captum_tf32_off": None if tf32_off is None else float(np.abs(tf32_off[0] - tf32_off[1]).max()),
        "reduced_precision": reduced,
    }


def print_results(results: list[dict], repeats: int) -> None:
    print(f"\nseconds (best of {repeats}); ratio = Captum best / contender")
    names = list(results[0]["ratios"])
    headers = ["case", "windows", "captum best", *names, "max|diff| exact", "same, TF32 off", "max|map|"]
    rows = []
    for r in results:
        s, q = r["seconds"], r["ratios"]
        rows.append([r["case"], r["windows_per_image"] * r["images"], f"{s[r['captum_best']]:.3f}s ({r['captum_best'][7:]})",
                     *[f"{s[n]:.3f}s {q[n]:.1f}x" for n in names], f"{max(r['max_abs_diff_vs_captum'].values()):.1e}",
                     "-" if r["max_abs_diff_vs_captum_tf32_off"] is None else f"{r['max_abs_diff_vs_captum_tf32_off']:.1e}",
                     f"{r['max_abs_reference']:.1e}"])
    print_table(headers, rows)
    print("\nreduced precision vs the float32 incremental map: max|diff|, SSIM min over images, precision_error")
    rows = [[r["case"], name, f"{a['max_abs_diff_vs_fp32']:.1e}", f"{min(a['ssim_per_image']):.4f}", f"{a['precision_error']:.1e}"]
            for r in results for name, a in r["reduced_precision"].items()]
    print_table(["case", "contender", "max|diff|", "SSIM min", "precision_error"], rows)
    print("\npeak GPU MB above the start of each call")
    for r in results:
        print(r["case"] + ": " + ", ".join(f"{name} {mb:.0f}" for name, mb in r["peak_gpu_mb"].items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two small cases: a smoke run")
    parser.add_argument("--repeats", type=int, default=2, help="timed rounds after the warm-up (default 2)")
    parser.add_argument("--budget-s", type=float, default=float("inf"), help="start no new case after this many seconds")
    parser.add_argument("--json", type=Path, help="write the results as JSON to this path (after every case)")
    parser.add_argument("--images", type=int, help="only the cases with this many images")
    parser.add_argument("--models", default="resnet50,resnet18,vgg,demo", help="comma-separated, in this order")
    parser.add_argument("--device", default="cuda", help="torch device (default cuda; 'cpu' only checks the script)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: this benchmark needs a GPU (or --device cpu --quick to check the script)", file=sys.stderr)
        return 2
    env = environment(device)
    print(env, flush=True)
    started = time.perf_counter()
    results: list[dict] = []
    models: dict = {}
    throughput = {}
    planned = [c for c in cases(args.quick, tuple(args.models.split(","))) if args.images in (None, c["images"])]
    for case in planned:
        if time.perf_counter() - started > args.budget_s:
            print(f"budget of {args.budget_s:.0f} s spent: skipping {case}", flush=True)
            continue
        names = QUICK if args.quick else tuple(VEXPLAIN)
        try:
            results.append(run_case(case, args.repeats, models, device, names))
        except Exception:  # one broken case must not cost the rest of a leased GPU's time
            traceback.print_exc()
            continue
        if case["name"] not in throughput and case["name"] != "demo":
            throughput[case["name"]] = forward_throughput(models[case["name"]][0], case["size"], device, batch=8 if args.quick else 256)
            print(f"{case['name']}: plain float32 forward at batch 256: {throughput[case['name']]:.0f} images/s", flush=True)
        write_results(args.json, "occlusion-gpu", repeats=args.repeats, environment=env, forward_images_per_s=throughput, results=results)
    if results:
        print_results(results, args.repeats)
    tf32_off = [r["max_abs_diff_vs_captum_tf32_off"] for r in results if r["max_abs_diff_vs_captum_tf32_off"] is not None]
    return 0 if len(results) == len(planned) and all(agrees(diff) for diff in tf32_off) else 1


if __name__ == "__main__":
    raise SystemExit(main())
