"""Excitation backprop at ``layer2`` of the ResNet-18 of ``compare_relevance.py``: vexplain, TorchRay
(``update_resnet`` copy) and one plain forward + backward, 8 interleaved rounds, every time and
the medians printed. A check on ``compare_relevance.py``'s three-round ratio.

    python benchmarks/measure_excitation_rounds.py
"""
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]
from gradcam_reference import _import_torchvision
_import_torchvision()
import vexplain as vx
from compare_relevance import torchvision_resnet18
from torchray.attribution import excitation_backprop as E
torch.set_num_threads(1)
m = torchvision_resnet18().eval()
x = torch.randn(1, 3, 224, 224)
target = int(m(x).argmax())
patched = E.update_resnet(copy.deepcopy(m))
ours = lambda: vx.explain(m, x, method="excitation_backprop", layer="layer2", targets=target)
theirs = lambda: E.excitation_backprop(patched, x, target, saliency_layer="layer2")
xg = x.clone().requires_grad_(True)
plain = lambda: torch.autograd.grad(m(xg)[0, target], xg)
ours(); theirs(); plain()
A, B, C = [], [], []
for r in range(8):
    for f, s in ((ours, A), (theirs, B), (plain, C)):
        t = time.perf_counter(); f(); s.append(time.perf_counter() - t)
print([round(v,3) for v in A], [round(v,3) for v in B]); print("vexplain", round(statistics.median(A), 3), "torchray", round(statistics.median(B), 3), "fwd+bwd", round(statistics.median(C), 3), "ratio", round(statistics.median(A) / statistics.median(B), 2))
