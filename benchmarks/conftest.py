"""Fixtures of the pytest-benchmark suites.

``python -m pytest benchmarks --benchmark-enable`` measures; ``python -m pytest benchmarks`` (the
project's ``addopts`` disable benchmarking) runs each benchmark once as a smoke test, with the
expensive occlusion cases on a coarser stride (see ``occlusion_stride``). The normal test run
(``python -m pytest``, ``testpaths = ["tests"]``) does not collect this folder.
"""
from __future__ import annotations

import pytest
import torch

from benchmarks.models import demo_inputs, demo_model

#: occlusion on the 64x64 demo images: window 8, stride 4 (225 windows) when measuring
OCCLUSION_WINDOW = 8
OCCLUSION_STRIDE = 4
#: stride of the once-only smoke run (49 windows) when benchmarking is disabled
SMOKE_STRIDE = 8


@pytest.fixture(scope="session")
def demo():
    """``(model, weights)``: the trained demo model, or random weights while the assets are missing."""
    torch.manual_seed(0)
    return demo_model()


@pytest.fixture(scope="session")
def demo_batches() -> dict[int, torch.Tensor]:
    """Preprocessed demo scenes, batch 1 and 16."""
    images = demo_inputs(16)
    return {1: images[:1].contiguous(), 16: images}


@pytest.fixture
def occlusion_stride(benchmark) -> int:
    """The occlusion stride: the benchmark's own when measuring, a coarser one for the smoke run."""
    return SMOKE_STRIDE if benchmark.disabled else OCCLUSION_STRIDE


def record(benchmark, explanation, **extra) -> None:
    """Put what the run used (engine, batch size, ...) into the benchmark's ``extra_info``."""
    keep = ("engine", "batch_size", "windows", "layer", "export_cached", "window", "stride")
    benchmark.extra_info.update({k: str(v) for k, v in explanation.options.items() if k in keep})
    benchmark.extra_info.update({k: str(v) for k, v in extra.items()})
