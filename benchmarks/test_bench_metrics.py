"""Every registered metric on the demo model's Grad-CAM maps, batch 1 and 16.

The metric list comes from the registry, so a newly registered metric is benchmarked at once. The
smoke run (benchmarking disabled) uses fewer steps so it stays a quick check.
"""
from __future__ import annotations

import numpy as np
import pytest

import vexplain as vx
from benchmarks.conftest import record
from benchmarks.models import demo_inputs

METRICS = [m.name for m in vx.metrics()]
#: lighter settings for the once-only smoke run
SMOKE = {"deletion": {"steps": 20}, "insertion": {"steps": 20}, "road": {"fractions": (0.3, 0.7)}, "randomization": {"layers": 2}}


@pytest.fixture(scope="session")
def demo_boxes() -> np.ndarray:
    from vexplain.demo.scenes import generate_dataset

    return generate_dataset(16, seed=7)[2]  # the scenes of demo_inputs(16)


@pytest.mark.parametrize("batch", [1, 16])
@pytest.mark.parametrize("metric", METRICS)
def test_metric(benchmark, demo, demo_batches, demo_boxes, metric, batch):
    model, weights = demo
    inputs = demo_batches[batch]
    assert np.array_equal(inputs.numpy(), demo_inputs(16)[:batch].numpy())
    explanation = vx.explain(model, inputs, method="gradcam")
    options = SMOKE.get(metric, {}) if benchmark.disabled else {}
    benchmark.group = f"metric batch {batch}"
    run = lambda: vx.evaluate(model, inputs, explanation, metric=metric, masks=demo_boxes[:batch], **options)  # noqa: E731
    evaluation = benchmark.pedantic(run, rounds=3, warmup_rounds=1)
    record(benchmark, explanation, weights=weights, metric=metric, **{k: evaluation.options.get(k) for k in ("engine", "batch_size") if k in evaluation.options})
    assert evaluation.score.shape == (batch,) and np.isfinite(evaluation.score).all()
