"""Deletion (100 steps, one 224x224 image, ResNet-18 shape): vexplain's batched metric vs an unbatched loop.

Four timings on the same image and map, medians after a warm-up:
- ``vexplain deletion`` (``vx.evaluate(..., metric="deletion")``, default engine: ONNX Runtime for a
  CPU model, export cached by the warm-up);
- the same with ``engine="torch"`` (batched, no ONNX);
- ``unbatched loop``: the straightforward implementation, one torch forward per step;
- ``floor``: one plain batched torch forward of the same steps + 1 images already built, the least any
  deletion implementation must compute.
The curves are checked to agree before any ratio is printed.

    python benchmarks/compare_deletion.py [--quick] [--repeats R] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import vexplain as vx  # noqa: E402
from benchmarks.common import environment, median_of, print_table  # noqa: E402
from benchmarks.models import resnet18_shaped, resnet_inputs  # noqa: E402


def unbatched_deletion(model: torch.nn.Module, image: torch.Tensor, saliency: np.ndarray, target: int, steps: int) -> np.ndarray:
    """One forward per step: the image with the k·P // steps most relevant pixels set to 0."""
    pixels = saliency.size
    order = torch.from_numpy(np.argsort(-saliency.ravel(), kind="stable"))
    curve = []
    with torch.no_grad():
        for k in range(steps + 1):
            keep = torch.ones(pixels)
            keep[order[: k * pixels // steps]] = 0.0
            shown = image * keep.view(1, *saliency.shape)
            curve.append(float(torch.softmax(model(shown[None]).double(), dim=1)[0, target]))
    return np.array(curve)


def perturbed_batch(image: torch.Tensor, saliency: np.ndarray, steps: int) -> torch.Tensor:
    pixels = saliency.size
    ranks = np.empty(pixels, np.int64)
    ranks[np.argsort(-saliency.ravel(), kind="stable")] = np.arange(pixels)
    counts = np.array([k * pixels // steps for k in range(steps + 1)])
    keep = torch.from_numpy((ranks[None, :] >= counts[:, None]).astype(np.float32)).view(steps + 1, 1, *saliency.shape)
    return image[None] * keep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="112x112 and 20 steps, one repeat: a smoke run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="write the numbers here")
    args = parser.parse_args()
    size, steps, repeats = (112, 20, 1) if args.quick else (224, 100, args.repeats)
    model = resnet18_shaped()
    x = resnet_inputs(1, size)
    target = int(model(x).argmax())
    saliency = vx.explain(model, x, method="gradcam", targets=target).maps[0]

    def batched(engine: str = "auto"):
        return vx.evaluate(model, x, saliency[None], metric="deletion", targets=target, steps=steps, engine=engine)

    first = batched()
    loop_curve = unbatched_deletion(model, x[0], saliency, target, steps)
    diff = float(np.abs(first.curves["deletion"][0] - loop_curve).max())
    assert diff < 1e-4, f"batched and unbatched curves differ by {diff}"
    built = perturbed_batch(x[0], saliency, steps)
    timings = {}
    timings["vexplain deletion (onnx)"], _ = median_of(batched, repeats, warmup=1)
    timings["vexplain deletion (engine=torch)"], _ = median_of(lambda: batched("torch"), repeats, warmup=1)
    timings["unbatched loop (torch)"], _ = median_of(lambda: unbatched_deletion(model, x[0], saliency, target, steps), repeats, warmup=1)

    def floor():
        with torch.no_grad():
            return model(built)

    timings["floor: one torch forward of the batch"], _ = median_of(floor, repeats, warmup=1)
    loop = timings["unbatched loop (torch)"]
    rows = [[name, seconds, loop / seconds] for name, seconds in timings.items()]
    print(f"deletion, {steps} steps ({steps + 1} forwards), one {size}x{size} image, ResNet-18 shape; batch size {first.options['batch_size']}; max |curve diff| {diff:.2e}")
    print_table(["run", "seconds", "loop / run"], rows)
    if args.json:
        Path(args.json).write_text(json.dumps({"environment": environment(), "size": size, "steps": steps, "seconds": timings, "max_abs_diff": diff, "batch_size": first.options["batch_size"]}, indent=1))


if __name__ == "__main__":
    main()
