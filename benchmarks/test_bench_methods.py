"""Every registered method on the demo model, batch 1 and 16.

The method list comes from the registry, so a newly registered method is benchmarked at once.
"""
from __future__ import annotations

import numpy as np
import pytest

import vexplain as vx
from benchmarks.conftest import OCCLUSION_WINDOW, record

METHODS = [m.name for m in vx.methods()]
#: methods that run many forward passes; timed with a few fixed rounds instead of calibration
PERTURBATION = {"occlusion"}


def options_for(method: str, stride: int) -> dict:
    return {"window": OCCLUSION_WINDOW, "stride": stride} if method == "occlusion" else {}


@pytest.mark.parametrize("batch", [1, 16])
@pytest.mark.parametrize("method", METHODS)
def test_method(benchmark, demo, demo_batches, occlusion_stride, method, batch):
    model, weights = demo
    inputs = demo_batches[batch]
    options = options_for(method, occlusion_stride)
    benchmark.group = f"method batch {batch}"
    run = lambda: vx.explain(model, inputs, method=method, **options)  # noqa: E731
    if method in PERTURBATION:
        explanation = benchmark.pedantic(run, rounds=3, warmup_rounds=1)
    else:
        explanation = benchmark(run)
    record(benchmark, explanation, weights=weights)
    assert explanation.maps.shape == (batch, *inputs.shape[2:])
    assert np.isfinite(explanation.maps).all()
