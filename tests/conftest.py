"""Shared test setup: the tests folder on sys.path, so ``from models import ...`` works and
``"models:seeded_cnn"`` is a valid ``pkg.module:factory`` spec."""
from __future__ import annotations

import sys
from pathlib import Path

TESTS = str(Path(__file__).resolve().parent)
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)

import torch  # noqa: E402

# Tiny models gain nothing from intra-op threads, and OpenMP threads spinning against other
# processes on a small shared machine make the suite several times slower.
torch.set_num_threads(1)

# On GPUs from Ampere on, convolutions default to TF32 (10-bit mantissas): the CUDA tests compare
# maps to float32 references at 1e-4, so they run in true float32.
if torch.cuda.is_available():
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
