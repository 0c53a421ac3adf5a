"""``engine="auto"`` against every exact engine run directly, and the probed batch size against
fixed ones (issue 12), in one run: prints auto / fastest ratios.

Cases (occlusion, CPU):
- ``demo``: the shipped demo CNN with its trained weights (demo/assets) on 64×64 demo scenes,
  window 8, stride 2;
- ``resnet18``: the ResNet-18-shaped model of benchmarks/models.py at 224², window 32, stride 16;
- ``face``: a 48×48 grey-scale face classifier with PReLU layers (mini-Xception-like:
  conv-BN-PReLU stem, depthwise-separable residual blocks, 7 classes; fixed random weights, since
  nothing can be downloaded here), window 8, stride 2.
Batch size (RISE, ONNX Runtime adapter, engine "onnx" only, so only the batch is chosen):
- ``onnx-demo``: the shipped demo_cnn.onnx; ``onnx-wide``: a batch-sensitive ONNX classifier (64
  channels at full 48×48 resolution: large batches leave the caches).

Every contender runs once per round (interleaved, so load changes hit all alike), medians are
kept. ``auto`` is timed with its choice cached (the steady state of a process or an on-disk
cache) and, once per round after clearing the cache, as a first call including its probes.
"""
from __future__ import annotations

import io
import os
import statistics
import time
from typing import Any, Callable

import torch
from torch import nn

from common import bench_parser, environment, print_table, write_results
from models import demo_inputs, demo_model, resnet18_shaped, resnet_inputs

import vexplain as vx
from vexplain.core import engine_choice
from vexplain.core.perturbation import batch_size_for


class SeparableBlock(nn.Module):
    """Two depthwise-separable 3×3 convolutions with BN and PReLU, a stride-2 max-pool, and a
    strided 1×1 residual: a mini-Xception module."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False), nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.PReLU(cout),
            nn.Conv2d(cout, cout, 3, padding=1, groups=cout, bias=False), nn.Conv2d(cout, cout, 1, bias=False), nn.BatchNorm2d(cout),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=2, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.skip(x)


class FaceNet(nn.Module):
    """48×48 grey-scale expression classifier (7 classes), conv-BN-PReLU stem then four separable blocks."""

    def __init__(self, classes: int = 7):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.PReLU(8),
            nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.PReLU(8),
        )
        self.blocks = nn.Sequential(SeparableBlock(8, 16), SeparableBlock(16, 32), SeparableBlock(32, 64), SeparableBlock(64, 128))
        self.head = nn.Conv2d(128, classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x))).mean((2, 3))


class WideNet(nn.Module):
    """A batch-sensitive classifier: 32 channels at the input's full resolution, so a batch of 256
    48×48 inputs holds 75 MB per feature map, far beyond the caches."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(32, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean((2, 3)))


def seeded(module: nn.Module, seed: int = 0) -> nn.Module:
    """``module`` with fixed random weights (BN statistics too), in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            if tensor.is_floating_point():
                if name.endswith("running_var"):
                    tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
                elif name.endswith("weight") and tensor.dim() == 1:
                    tensor.copy_(0.75 + 0.5 * torch.rand(tensor.shape, generator=generator) if "prelu" not in name else 0.25)
                else:
                    fan_in = max(1, tensor[0].numel()) if tensor.dim() > 1 else 1
                    tensor.copy_(torch.randn(tensor.shape, generator=generator) / fan_in**0.5)
    return module.eval()


def onnx_bytes(model: nn.Module, shape: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    torch.onnx.export(model, torch.zeros((1, *shape)), buffer, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, dynamo=False)
    return buffer.getvalue()


def rounds(contenders: dict[str, Callable[[], Any]], repeats: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for round_ in range(repeats):
        for name, fn in contenders.items():
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
            print(f"  round {round_ + 1}/{repeats} {name:14s} {times[name][-1]:7.3f} s", flush=True)
    return times


def occlusion_case(label: str, model: nn.Module, x: torch.Tensor, window: int, stride: int, repeats: int) -> dict[str, Any]:
    print(f"{label}: occlusion of {tuple(x.shape)}, window {window}, stride {stride}", flush=True)
    adapter = vx.adapt(model)

    def run(engine: str) -> Any:
        return vx.explain(adapter, x, method="occlusion", window=window, stride=stride, engine=engine)

    def first_call() -> Any:
        engine_choice.clear_cache()
        return run("auto")

    for engine in ("incremental", "onnx", "torch"):
        run(engine)  # warm: the trace, the ONNX export
    chosen = first_call().options
    contenders = {engine: (lambda engine=engine: run(engine)) for engine in ("incremental", "onnx", "torch")}
    contenders["auto"] = lambda: run("auto")
    contenders["auto (1st call)"] = first_call
    times = rounds(contenders, repeats)
    medians = {name: statistics.median(t) for name, t in times.items()}
    fastest = min(("incremental", "onnx", "torch"), key=medians.get)
    last = run("auto").options
    return {
        "case": label, "medians": medians, "fastest": fastest, "auto_engine": last["engine"], "auto_batch": last["batch_size"],
        "first_choice": chosen["engine"], "auto_reason": last["engine_reason"],
        "auto_ratio": medians["auto"] / medians[fastest], "first_call_ratio": medians["auto (1st call)"] / medians[fastest],
        "rule_ratio": medians["incremental"] / medians[fastest],
    }


def batch_case(label: str, data: bytes, x: torch.Tensor, masks: int, repeats: int) -> dict[str, Any]:
    print(f"{label}: RISE of {tuple(x.shape)}, {masks} masks, ONNX Runtime", flush=True)
    adapter = vx.adapt(data)

    def run(batch: int | None) -> Any:
        return vx.explain(adapter, x, method="rise", masks=masks, cells=7, batch_size=batch)

    default = batch_size_for(tuple(x.shape[1:]), 1024)  # what batch_size=None gave before: the memory-derived size
    sizes = sorted({1, 8, 32, 64, default})
    engine_choice.clear_cache()
    chosen = run(None).options
    contenders = {f"batch {size}": (lambda size=size: run(size)) for size in sizes}
    contenders["auto"] = lambda: run(None)
    times = rounds(contenders, repeats)
    medians = {name: statistics.median(t) for name, t in times.items()}
    fixed = [f"batch {size}" for size in sizes]
    best = min(fixed, key=medians.get)
    return {
        "case": label, "medians": medians, "best": best, "default": f"batch {default}", "auto_batch": chosen["batch_size"],
        "auto_probes": chosen["engine_probes"], "default_ratio": medians[f"batch {default}"] / medians[best],
        "auto_ratio": medians["auto"] / medians[best],
    }


def main() -> None:
    parser = bench_parser(__doc__, repeats=5, quick_repeats=3, quick_help="fewer images and rounds", cases=False)
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else 5)
    images = 2 if args.quick else 4
    env = environment()
    print(f"load average at start: {env['load_average_at_start']}", flush=True)
    demo, weights = demo_model()
    cases = [
        occlusion_case(f"demo ({weights})", demo, demo_inputs(images), 8, 2, repeats),
        occlusion_case("resnet18-shaped 224", resnet18_shaped(), resnet_inputs(1), 32, 16, repeats),
        occlusion_case("face 48 PReLU", seeded(FaceNet()), torch.randn((images, 1, 48, 48), generator=torch.Generator().manual_seed(3)), 8, 2, repeats),
    ]
    from vexplain.demo import model as demo_module

    batches = [
        batch_case("onnx demo_cnn", (demo_module.ASSETS / "demo_cnn.onnx").read_bytes(), demo_inputs(1), 1000, repeats),
        batch_case("onnx wide (batch-sensitive)", onnx_bytes(seeded(WideNet()), (3, 48, 48)), torch.randn((1, 3, 48, 48)), 512, repeats),
    ]
    print(f"\nload average at end: {os.getloadavg()}")
    print_table(
        ["case", "incremental s", "onnx s", "torch s", "auto s", "auto 1st s", "auto picks", "auto/fastest", "1st/fastest", "rule/fastest"],
        [[c["case"], c["medians"]["incremental"], c["medians"]["onnx"], c["medians"]["torch"], c["medians"]["auto"], c["medians"]["auto (1st call)"],
          f"{c['auto_engine']}@{c['auto_batch']}", c["auto_ratio"], c["first_call_ratio"], c["rule_ratio"]] for c in cases],
    )
    print_table(
        ["case", "best fixed", "default", "auto batch", "default/best", "auto/best"],
        [[c["case"], c["best"], c["default"], c["auto_batch"], c["default_ratio"], c["auto_ratio"]] for c in batches],
    )
    write_results(args.json, "measure_auto_engine", environment=env, load_average_at_end=os.getloadavg(), occlusion=cases, batch=batches)


if __name__ == "__main__":
    main()
