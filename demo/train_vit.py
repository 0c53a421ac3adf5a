"""Train a tiny vision transformer on the demo's procedural scenes (for the ViT benchmarks).

Usage::

    python -m vexplain.demo.train_vit [--out PATH] [--arch hybrid|patch] [--epochs N] [--seed S] [--train N]

Two architectures, both with a class token, learned position embeddings, ``depth`` pre-norm blocks
of ``nn.MultiheadAttention`` and an MLP, a final LayerNorm and a linear head on the class token (the
layout Hugging Face and timm ViTs share, so vexplain finds the grid, prefix token and attention
modules unaided), and an 8x8 token grid on 64x64 inputs:

- ``patch`` (``DemoViT``): 8x8 patches embedded by a strided convolution, as in ViT-B/16. Trained
  from scratch on a few thousand cluttered scenes it stays at chance (0.258 held-out after 8
  epochs on 4000 scenes; learning rates, 30 epochs, 4x4 patches, a max-pooling curriculum, a conv
  stem trained from scratch and distillation from the demo CNN did not help).
- ``hybrid`` (``HybridViT``, the default): the ViT paper's hybrid (Dosovitskiy et al. 2021, §3.1),
  whose patch embedding (2x2, stride 2) runs on a CNN's feature map. The CNN is the first three
  conv blocks of the shipped demo CNN (stride 4, its trained weights as the starting point, fine-
  tuned with the rest), so the transformer learns the scenes in a few epochs.

Trained with AdamW and a one-cycle schedule from a fixed seed on ``--train`` scenes
(``demo.scenes``, the CNN's generator), normalised by the scenes' own channel statistics; the
held-out scenes come from another seed, as in ``demo/train.py``. Writes a state dict and a JSON of
the metadata (``arch`` included) to ``--out`` (default: a temporary folder); nothing is shipped.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .model import build as build_demo_cnn
from .model import load_demo_model, preprocess
from .scenes import CLASS_NAMES, generate_dataset
from .train import HELDOUT_SEED_OFFSET, channel_stats, evaluate

INPUT_SIZE = 64
PATCH = 8
BATCH_SIZE = 64
#: peak learning rate per architecture
LEARNING_RATES = {"patch": 2e-3, "hybrid": 1e-3}
#: conv blocks of the demo CNN (conv, BatchNorm, ReLU each) the hybrid's stem takes: stride 4, 32 channels
HYBRID_STEM_BLOCKS = 3


class Block(nn.Module):
    """x + MHA(norm1(x)), then x + MLP(norm2(x))."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class DemoViT(nn.Module):
    """Conv patch embedding (8x8, stride 8), class token, position embeddings, blocks, norm, head."""

    def __init__(self, classes: int = len(CLASS_NAMES), dim: int = 48, heads: int = 4, depth: int = 3):
        super().__init__()
        self.embed = nn.Conv2d(3, dim, PATCH, PATCH)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, 1 + (INPUT_SIZE // PATCH) ** 2, dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], dim=1) + self.pos
        return self.head(self.norm(self.blocks(tokens))[:, 0])


class HybridViT(DemoViT):
    """``DemoViT`` whose patch embedding (2x2, stride 2) runs on the demo CNN's stride-4 feature map."""

    def __init__(self, classes: int = len(CLASS_NAMES), dim: int = 48, heads: int = 4, depth: int = 3, pretrained_stem: bool = True):
        super().__init__(classes, dim, heads, depth)
        features = load_demo_model().features if pretrained_stem else build_demo_cnn().features
        stem = list(features)[: 3 * HYBRID_STEM_BLOCKS]
        channels = [m for m in stem if isinstance(m, nn.Conv2d)][-1].out_channels
        self.embed = nn.Sequential(*stem, nn.Conv2d(channels, dim, 2, 2))


ARCHITECTURES = {"patch": DemoViT, "hybrid": HybridViT}


def build(arch: str = "hybrid") -> DemoViT:
    """An untrained model of ``arch`` (the hybrid's stem starts from the shipped CNN's weights)."""
    return ARCHITECTURES[arch]()


def load(weights: Path, arch: str = "hybrid") -> DemoViT:
    """A model of ``arch`` with the state dict ``weights`` written by :func:`train`, in eval mode."""
    model = ARCHITECTURES[arch](pretrained_stem=False) if arch == "hybrid" else ARCHITECTURES[arch]()
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.eval()


def train(out: Path, epochs: int, seed: int, count: int, heldout: int = 500, arch: str = "hybrid") -> tuple[DemoViT, dict[str, Any]]:
    """Train a model of ``arch`` on ``count`` scenes, write ``demo_vit.pt`` and ``demo_vit.json`` to ``out``."""
    started = time.time()
    torch.manual_seed(seed)
    x_u8, y, _ = generate_dataset(count, seed, INPUT_SIZE)
    test_u8, y_test, _ = generate_dataset(heldout, seed + HELDOUT_SEED_OFFSET, INPUT_SIZE)
    mean, std = channel_stats(x_u8)
    x, x_test, labels = torch.from_numpy(preprocess(x_u8, mean, std)), preprocess(test_u8, mean, std), torch.from_numpy(y)
    model = build(arch)
    rate = LEARNING_RATES[arch]
    steps = epochs * (count // BATCH_SIZE)
    opt = torch.optim.AdamW(model.parameters(), lr=rate, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, rate, total_steps=steps)
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(count, generator=generator)
        for step in range(count // BATCH_SIZE):
            index = order[step * BATCH_SIZE : (step + 1) * BATCH_SIZE]
            loss = F.cross_entropy(model(x[index]), labels[index])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
        print(f"epoch {epoch + 1}/{epochs}: loss {loss.item():.3f} held-out acc {evaluate(model, x_test, y_test):.3f}", flush=True)
    model.eval()
    metadata = {
        "arch": arch, "class_names": list(CLASS_NAMES), "input_size": [INPUT_SIZE, INPUT_SIZE], "mean": mean, "std": std,
        "train_seed": seed, "n_train": count, "epochs": epochs, "heldout_accuracy": round(evaluate(model, x_test, y_test), 4),
        "seconds": round(time.time() - started, 1),
    }
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "demo_vit.pt")
    (out / "demo_vit.json").write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    print(f"held-out accuracy {metadata['heldout_accuracy']}; wrote {out} ({metadata['seconds']}s)", flush=True)
    return model, metadata


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: a new temporary folder)")
    parser.add_argument("--arch", choices=sorted(ARCHITECTURES), default="hybrid", help="model (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=10, help="training epochs (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="data/training seed (default: %(default)s)")
    parser.add_argument("--train", type=int, default=6000, help="training scenes (default: %(default)s)")
    args = parser.parse_args(argv)
    train(args.out or Path(tempfile.mkdtemp(prefix="demo_vit_")), args.epochs, args.seed, args.train, arch=args.arch)


if __name__ == "__main__":
    main()
