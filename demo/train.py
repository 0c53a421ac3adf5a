"""Train ``DemoCNN`` on procedural scenes and write the bundled demo assets.

Usage::

    python -m vexplain.demo.train [--out DIR] [--epochs N] [--seed S]

Writes ``demo_cnn.pt`` (state_dict), ``demo_cnn.onnx`` (self-contained, dynamic
batch, ``vexplain.*`` metadata_props) and ``demo_cnn.json`` into ``--out``
(default: the package's ``assets/`` folder).  The data sets are bit-identical
for a given seed; the weights are deterministic on a given machine.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .model import ASSETS, METADATA_FILE, ONNX_FILE, WEIGHTS_FILE, build, preprocess
from .scenes import CLASS_NAMES, generate_dataset

INPUT_SIZE = 64
N_TRAIN = 6000
N_HELDOUT = 1000
HELDOUT_SEED_OFFSET = 1_000_003  # held-out scenes come from a different seed
BATCH_SIZE = 32
LEARNING_RATE = 1e-3
#: the pooling goes from global max (start) to global average (end) between these fractions of training
POOL_RAMP = (0.36, 0.72)
FACTORY = "vexplain.demo.model:build"


def channel_stats(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 NHWC images on the [0, 1] scale, rounded."""
    x = images.reshape(-1, 3).astype(np.float64) / 255.0
    return [round(float(v), 4) for v in x.mean(0)], [round(float(v), 4) for v in x.std(0)]


def pooled_logits(model: torch.nn.Module, x: torch.Tensor, alpha: float) -> torch.Tensor:
    """Class scores with pooling ``alpha * mean + (1 - alpha) * max`` over the last feature map.

    Training starts with global max pooling, which learns object detectors quickly on cluttered
    scenes (with average pooling from the start the clutter drowns the signal and the network
    stays at chance), and ends with pure average pooling, the architecture that ships (CAM needs it).
    """
    features = model.features(x)
    pooled = alpha * features.mean(dim=(2, 3)) + (1 - alpha) * features.amax(dim=(2, 3))
    return model.classifier(pooled)


def pool_mix(step: int, total: int) -> float:
    """The average-pooling share at ``step`` of ``total``: 0 before the ramp, 1 after it."""
    start, end = POOL_RAMP[0] * total, POOL_RAMP[1] * total
    return float(min(1.0, max(0.0, (step - start) / (end - start))))


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, batch: int = 500) -> float:
    """Top-1 accuracy of ``model`` on preprocessed NCHW float32 ``x``."""
    model.eval()
    correct = 0
    for i in range(0, len(x), batch):
        pred = model(torch.from_numpy(x[i:i + batch])).argmax(1).numpy()
        correct += int((pred == y[i:i + batch]).sum())
    return correct / len(x)


def export_onnx(model: torch.nn.Module, path: Path, metadata: dict[str, Any]) -> None:
    """Export ``model`` to a self-contained ONNX file with ``vexplain.*`` metadata."""
    import onnx

    dummy = torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE)
    torch.onnx.export(
        model, (dummy,), str(path), dynamo=False,
        input_names=["input"], output_names=["scores"],
        dynamic_axes={"input": {0: "batch"}, "scores": {0: "batch"}},
        opset_version=17,
    )
    proto = onnx.load(str(path))
    props = {
        "vexplain.class_names": json.dumps(list(metadata["class_names"])),
        "vexplain.input_size": json.dumps(list(metadata["input_size"])),
        "vexplain.mean": json.dumps(list(metadata["mean"])),
        "vexplain.std": json.dumps(list(metadata["std"])),
    }
    existing = {p.key: p for p in proto.metadata_props}
    for key, value in props.items():
        entry = existing.get(key) or proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path), save_as_external_data=False)


def train(out: Path, epochs: int, seed: int) -> dict[str, Any]:
    """Generate data, train, evaluate and write all assets to ``out``."""
    t_start = time.time()
    torch.manual_seed(seed)
    torch.set_num_threads(2)

    print(f"generating {N_TRAIN} training + {N_HELDOUT} held-out scenes ...", flush=True)
    x_train_u8, y_train, _ = generate_dataset(N_TRAIN, seed, INPUT_SIZE)
    x_test_u8, y_test, _ = generate_dataset(N_HELDOUT, seed + HELDOUT_SEED_OFFSET, INPUT_SIZE)
    mean, std = channel_stats(x_train_u8)
    x_train = torch.from_numpy(preprocess(x_train_u8, mean, std))
    x_test = preprocess(x_test_u8, mean, std)
    y_train_t = torch.from_numpy(y_train)
    print(f"  done in {time.time() - t_start:.1f}s; mean={mean} std={std}", flush=True)

    model = build(len(CLASS_NAMES))
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    steps_per_epoch = N_TRAIN // BATCH_SIZE
    total_steps = epochs * steps_per_epoch
    gen = torch.Generator().manual_seed(seed)

    for epoch in range(epochs):
        model.train()
        t_epoch = time.time()
        perm = torch.randperm(N_TRAIN, generator=gen)
        loss_sum, correct = 0.0, 0
        for step in range(steps_per_epoch):
            idx = perm[step * BATCH_SIZE:(step + 1) * BATCH_SIZE]
            xb = x_train[idx]
            yb = y_train_t[idx]
            logits = pooled_logits(model, xb, pool_mix(epoch * steps_per_epoch + step, total_steps))
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
        seen = steps_per_epoch * BATCH_SIZE
        acc = evaluate(model, x_test, y_test)
        print(f"epoch {epoch + 1}/{epochs}: loss {loss_sum / seen:.4f} "
              f"train acc {correct / seen:.4f} held-out acc {acc:.4f} "
              f"({time.time() - t_epoch:.0f}s)", flush=True)

    model = model.eval()
    acc = evaluate(model, x_test, y_test)
    metadata: dict[str, Any] = {
        "class_names": list(CLASS_NAMES),
        "input_size": [INPUT_SIZE, INPUT_SIZE],
        "mean": mean,
        "std": std,
        "factory": FACTORY,
        "train_seed": seed,
        "heldout_seed": seed + HELDOUT_SEED_OFFSET,
        "n_train": N_TRAIN,
        "n_heldout": N_HELDOUT,
        "epochs": epochs,
        "heldout_accuracy": round(acc, 4),
        "num_parameters": n_params,
    }

    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    torch.save(state, out / WEIGHTS_FILE)
    export_onnx(model, out / ONNX_FILE, metadata)
    (out / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    print(f"held-out accuracy {acc:.4f}; wrote assets to {out} "
          f"(total {time.time() - t_start:.0f}s)", flush=True)
    return metadata


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ASSETS, help="output folder (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=15, help="training epochs (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="data/training seed (default: %(default)s)")
    args = parser.parse_args(argv)
    train(args.out, args.epochs, args.seed)


if __name__ == "__main__":
    main()
