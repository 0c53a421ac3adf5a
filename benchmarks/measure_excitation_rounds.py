"""Excitation backprop at ``layer2`` of the ResNet-18 of ``compare_relevance.py``: vexplain, TorchRay
(``update_resnet`` copy) and one plain forward + backward, 8 interleaved rounds, every time and
the medians printed. A check on ``compare_relevance.py``'s three-round ratio.

    python benchmarks/measure_excitation_rounds.py [--rounds 8]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]


def seconds(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    from gradcam_reference import _import_torchvision  # torchvision beside the CPU torch (DESIGN.md)

    _import_torchvision()
    from compare_relevance import torchvision_resnet18
    from torchray.attribution import excitation_backprop as torchray

    import vexplain as vx

    torch.set_num_threads(1)
    model = torchvision_resnet18().eval()
    image = torch.randn(1, 3, 224, 224)
    target = int(model(image).argmax())
    patched = torchray.update_resnet(copy.deepcopy(model))
    leaf = image.clone().requires_grad_(True)
    contenders = {
        "vexplain": lambda: vx.explain(model, image, method="excitation_backprop", layer="layer2", targets=target),
        "torchray": lambda: torchray.excitation_backprop(patched, image, target, saliency_layer="layer2"),
        "forward+backward": lambda: torch.autograd.grad(model(leaf)[0, target], leaf),
    }
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for call in contenders.values():
        call()  # warm-up
    for _ in range(args.rounds):
        for name, call in contenders.items():
            times[name].append(seconds(call))
    for name, values in times.items():
        print(f"{name:>16}: median {statistics.median(values):.3f} s  rounds {' '.join(f'{v:.3f}' for v in values)}")
    print(f"vexplain / torchray: {statistics.median(times['vexplain']) / statistics.median(times['torchray']):.2f}")


if __name__ == "__main__":
    main()
