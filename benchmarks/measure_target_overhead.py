"""What a target object costs: occlusion of a YOLO-style detector explained through ``vx.targets.Box``
versus the same detector with the identical box score folded into the model as its (N, 1) output.

Both contenders run the same forward passes (torch engine, same batches), so the ratio is the
target's own cost per batch: decoding the anchors, the IoU against the reference box and the
class pick, vectorised over anchors. Also times ``Box.score`` alone on a YOLOv8n-sized output
(64 × 84 × 8400) next to the same output's ``sum()``, a floor for any pass over it.
"""
from __future__ import annotations

import torch
from torch import nn

from common import bench_parser, environment, interleaved_rounds, median_of, print_table, repeats_of, timed_with_peak_memory, write_results

import vexplain as vx
from vexplain.targets import Box


class Detector(nn.Module):
    """A convolutional stack to a stride-8 grid, YOLOv8-style output (N, 4 + K, anchors)."""

    def __init__(self, classes: int = 80, width: int = 32) -> None:
        super().__init__()
        layers, channels = [], 3
        for stride in (1, 2, 2, 2):
            layers += [nn.Conv2d(channels, width, 3, stride=stride, padding=1), nn.ReLU()]
            channels = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(width, 4 + classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.head(self.features(x))
        n, _, h, w = p.shape
        rows = torch.arange(h, dtype=p.dtype).view(1, h, 1).expand(n, h, w)
        cols = torch.arange(w, dtype=p.dtype).view(1, 1, w).expand(n, h, w)
        geometry = torch.stack([(cols + 0.5) * 8 + p[:, 0], (rows + 0.5) * 8 + p[:, 1], 16 * torch.exp(p[:, 2].clamp(-2, 2)), 16 * torch.exp(p[:, 3].clamp(-2, 2))], 1)
        return torch.cat([geometry.flatten(2), torch.sigmoid(p[:, 4:]).flatten(2)], 1)


class Folded(nn.Module):
    def __init__(self, model: nn.Module, target: Box) -> None:
        super().__init__()
        self.model, self.target = model, target

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.target.score(self.model(x))


def main() -> None:
    args = bench_parser(__doc__, repeats=5, quick_repeats=2, quick_help="one 64² image, 2 rounds", cases=False).parse_args()
    size = 64 if args.quick else 128
    torch.manual_seed(0)
    model = Detector().eval()
    x = torch.rand(2, 3, size, size)
    box = Box([size * 0.25, size * 0.25, size * 0.75, size * 0.75], label=None, iou=0.0)
    folded = Folded(model, box).eval()
    options = dict(method="occlusion", window=8, stride=4, engine="torch")
    contenders = {
        "Box target": lambda: vx.explain(model, x, targets=box, **options),
        "score folded into the model": lambda: vx.explain(folded, x, targets=0, **options),
    }
    times, _, last = interleaved_rounds(contenders, repeats_of(args), timed_with_peak_memory)
    best = {name: min(t) for name, t in times.items()}
    difference = float(abs(last["Box target"].maps - last["score folded into the model"].maps).max())
    output = torch.rand(64, 84, 8400)
    alone = Box([100.0, 100.0, 300.0, 300.0], label=None, iou=0.0)
    score_s, _ = median_of(lambda: alone.score(output), repeats_of(args))
    sum_s, _ = median_of(lambda: output.sum(), repeats_of(args))
    rows = [
        [f"occlusion, {size}², 2 images", f"{best['Box target']:.3f} s", f"{best['score folded into the model']:.3f} s", f"{best['Box target'] / best['score folded into the model']:.2f}×", f"{difference:.1e}"],
        ["Box.score on (64, 84, 8400)", f"{score_s * 1e3:.1f} ms", f"sum(): {sum_s * 1e3:.1f} ms", f"{score_s / sum_s:.1f}× a sum", "–"],
    ]
    print_table(["case", "Box target", "folded / floor", "ratio", "max |Δ map|"], rows)
    write_results(args.json, "target_overhead", environment=environment(), rows=rows, times=times)


if __name__ == "__main__":
    main()
