"""Tiny detectors for the target tests: one YOLO-style head in the three common output layouts.

``TinyYolo`` maps (N, 3, 16, 16) images through two convolutions to a 4 × 4 grid (stride 4);
each cell is one anchor with centre (j + 0.5 + tanh(t_x)) · 4, (i + 0.5 + tanh(t_y)) · 4 and size
4 · exp(clamp(t_w)), 4 · exp(clamp(t_h)) in input pixels, plus sigmoid class scores (and, for
``yolov5``, a sigmoid objectness and softmax class probabilities). ``layout``: ``yolov8`` →
(N, 4 + K, 16), ``yolov5`` → (N, 16, 5 + K), ``torchvision`` → a list of N dicts (every anchor
kept: boxes xyxy, labels = top class, scores = its score).
"""
from __future__ import annotations

import torch
from torch import nn

STRIDE = 4


class TinyYolo(nn.Module):
    def __init__(self, classes: int = 3, layout: str = "yolov8", width: int = 8) -> None:
        super().__init__()
        self.layout = layout
        self.classes = classes
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1), nn.ReLU(),
        )
        extra = 1 if layout == "yolov5" else 0
        self.head = nn.Conv2d(width, 4 + extra + classes, 1)

    def forward(self, x: torch.Tensor):
        p = self.head(self.features(x))  # (N, 4 + extra + K, h, w)
        n, _, h, w = p.shape
        rows = torch.arange(h, dtype=p.dtype).view(1, h, 1).expand(n, h, w)
        cols = torch.arange(w, dtype=p.dtype).view(1, 1, w).expand(n, h, w)
        cx = (cols + 0.5 + torch.tanh(p[:, 0])) * STRIDE
        cy = (rows + 0.5 + torch.tanh(p[:, 1])) * STRIDE
        bw = STRIDE * 2 * torch.exp(p[:, 2].clamp(-2, 2))
        bh = STRIDE * 2 * torch.exp(p[:, 3].clamp(-2, 2))
        geometry = torch.stack([cx, cy, bw, bh], dim=1).flatten(2)  # (N, 4, A)
        if self.layout == "yolov5":
            objectness = torch.sigmoid(p[:, 4]).flatten(1)[:, None]
            probabilities = torch.softmax(p[:, 5:], dim=1).flatten(2)
            return torch.cat([geometry, objectness, probabilities], dim=1).transpose(1, 2)  # (N, A, 5 + K)
        scores = torch.sigmoid(p[:, 4:]).flatten(2)  # (N, K, A)
        if self.layout == "yolov8":
            return torch.cat([geometry, scores], dim=1)
        cx, cy, bw, bh = geometry.unbind(1)
        boxes = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], dim=2)  # (N, A, 4)
        top, labels = scores.max(dim=1)
        return [{"boxes": boxes[i], "labels": labels[i], "scores": top[i]} for i in range(n)]


def tiny_yolo(seed: int = 0, layout: str = "yolov8", classes: int = 3) -> TinyYolo:
    """A ``TinyYolo`` with weights drawn from ``seed``, in eval mode."""
    torch.manual_seed(seed)
    return TinyYolo(classes, layout).eval()


def tiny_yolo_v5(seed: int = 0) -> TinyYolo:
    return tiny_yolo(seed, "yolov5")


def tiny_yolo_torchvision(seed: int = 0) -> TinyYolo:
    return tiny_yolo(seed, "torchvision")


class ScoreAsOutput(nn.Module):
    """``model`` with a target folded in: output ``target(model(x))`` as (N, T), explained by class index."""

    def __init__(self, model: nn.Module, target) -> None:
        super().__init__()
        self.inner = model
        self.target = target

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.target.score(self.inner(x))
