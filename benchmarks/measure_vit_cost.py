"""What each attention method costs against one forward + backward of the same ViT.

A ViT-S/16-sized Hugging Face ViT with random weights (hidden 384, 12 layers, 6 heads, MLP 1536,
patch 16, 224x224, SDPA attention) in eval mode. The reference is one forward and one backward of
the top-class logits w.r.t. the input (``torch.autograd.grad``), the cost of a saliency map; the
contenders are ``vx.explain`` with ``attention_rollout``, ``attention_gradcam`` and ``legrad``,
interleaved round by round so a load change hits all alike. Prints each method's median time and
its ratio to the reference (goal: at most 1.5).

    python benchmarks/measure_vit_cost.py [--batch 1 --batch 8] [--repeats N] [--quick] [--json PATH]
"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from common import bench_parser, environment, interleaved_rounds, print_table, repeats_of, timed_with_peak_memory, write_results  # noqa: E402

import vexplain as vx  # noqa: E402

METHODS = ("attention_rollout", "attention_gradcam", "legrad")


def vit_small() -> torch.nn.Module:
    from gradcam_reference import _import_torchvision

    _import_torchvision()
    import transformers

    torch.manual_seed(0)
    config = transformers.ViTConfig(image_size=224, patch_size=16, hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536, num_labels=1000)
    return transformers.ViTForImageClassification(config).eval()


def forward_backward(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    batch = x.detach().clone().requires_grad_(True)
    logits = model(batch).logits
    (grad,) = torch.autograd.grad(logits.max(dim=1).values.sum(), batch)
    return grad


def main() -> None:
    parser = bench_parser(__doc__, repeats=5, quick_repeats=2, quick_help="two rounds, batch 1 only", cases=False)
    parser.add_argument("--batch", type=int, action="append", help="batch size (repeatable; default 1 and 8)")
    args = parser.parse_args()
    batches = args.batch or ([1] if args.quick else [1, 8])
    torch.set_num_threads(torch.get_num_threads())
    model, repeats, rows, results = vit_small(), repeats_of(args), [], []
    for batch in batches:
        x = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(batch))
        contenders = {"forward+backward": lambda: forward_backward(model, x)}
        contenders.update({m: (lambda m=m: vx.explain(model, x, method=m)) for m in METHODS})
        for fn in contenders.values():  # warm-up
            fn()
        times, memory, _ = interleaved_rounds(contenders, repeats, timed_with_peak_memory)
        reference = statistics.median(times["forward+backward"])
        for name, seconds in times.items():
            median = statistics.median(seconds)
            rows.append([batch, name, median, median / reference, memory[name]])
            results.append({"batch": batch, "contender": name, "median_s": median, "ratio": median / reference, "times": seconds})
    print()
    print_table(["batch", "contender", "median s", "× fwd+bwd", "peak MB"], rows)
    write_results(args.json, "measure_vit_cost", environment=environment(), repeats=repeats, results=results)


if __name__ == "__main__":
    main()
