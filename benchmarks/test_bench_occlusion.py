"""Occlusion engines on the demo model: incremental (the CPU default), ONNX Runtime (cached export)
and torch, with Captum's ``Occlusion`` as the reference, batch 1 and 16, window 8, stride 4."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import vexplain as vx
from benchmarks.conftest import OCCLUSION_WINDOW, record


@pytest.mark.parametrize("batch", [1, 16])
@pytest.mark.parametrize("engine", ["incremental", "onnx", "torch"])
def test_vexplain_occlusion(benchmark, demo, demo_batches, occlusion_stride, engine, batch):
    model, weights = demo
    inputs = demo_batches[batch]
    benchmark.group = f"occlusion batch {batch}"
    run = lambda: vx.explain(model, inputs, method="occlusion", window=OCCLUSION_WINDOW, stride=occlusion_stride, engine=engine)  # noqa: E731
    explanation = benchmark.pedantic(run, rounds=3, warmup_rounds=1)
    record(benchmark, explanation, weights=weights)
    assert explanation.options["engine"] == engine


@pytest.mark.parametrize("batch", [1, 16])
def test_vexplain_onnx_first_call(benchmark, demo_batches, occlusion_stride, batch):
    """A fresh model object each round, so every call pays the ONNX export and session creation."""
    from benchmarks.models import demo_model

    inputs = demo_batches[batch]
    benchmark.group = f"occlusion batch {batch}"

    def setup():
        return (demo_model()[0],), {}

    def run(model):
        return vx.explain(model, inputs, method="occlusion", window=OCCLUSION_WINDOW, stride=occlusion_stride, engine="onnx")

    benchmark.pedantic(run, setup=setup, rounds=3)


@pytest.mark.parametrize(("perturbations_per_eval", "batch"), [(16, 1), (64, 1), (64, 16)])
def test_captum_occlusion(benchmark, demo, demo_batches, occlusion_stride, perturbations_per_eval, batch):
    from captum.attr import Occlusion

    model, _ = demo
    inputs = demo_batches[batch]
    channels = inputs.shape[1]
    with torch.no_grad():
        targets = model(inputs).argmax(dim=1)
    occlusion = Occlusion(model)
    benchmark.group = f"occlusion batch {batch}"

    def run():
        with torch.no_grad():
            return occlusion.attribute(
                inputs,
                sliding_window_shapes=(channels, OCCLUSION_WINDOW, OCCLUSION_WINDOW),
                strides=(channels, occlusion_stride, occlusion_stride),
                baselines=0,
                target=targets,
                perturbations_per_eval=perturbations_per_eval,
            )

    attribution = benchmark.pedantic(run, rounds=3, warmup_rounds=1)
    expected = vx.explain(model, inputs, method="occlusion", targets=[int(t) for t in targets],
                          window=OCCLUSION_WINDOW, stride=occlusion_stride).maps
    assert np.abs(attribution[:, 0].numpy() - expected).max() <= 1e-4


def test_gpu_benchmark_script_runs_its_quick_cases_on_the_cpu(tmp_path):
    """The GPU script is run on leased machines only; a CPU smoke run keeps it from rotting."""
    import json

    from benchmarks.compare_occlusion_gpu import QUICK, main

    out = tmp_path / "gpu.json"
    assert main(["--device", "cpu", "--quick", "--repeats", "1", "--json", str(out)]) == 0
    results = json.loads(out.read_text())["results"]
    assert [r["model"] for r in results] == ["demo", "resnet18"]
    for result in results:
        assert set(result["ratios"]) == set(QUICK) and max(result["max_abs_diff_vs_captum"].values()) <= 1e-4
