"""CUDA: occlusion's engines on a GPU model agree with the CPU and with Captum, batch sizes change
nothing, the incremental engine never waits on the GPU, and reduced precision reports its error.
Skipped without a CUDA device (CI has none); run on a GPU machine with ``pytest tests/test_cuda.py``."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import vexplain as vx
from vexplain.adapters.torch_incremental import incremental_engine

from incremental_models import ARCHITECTURES, architecture
from models import assert_untouched, images, snapshot

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
ATOL = 1e-4


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_incremental_on_cuda_equals_full_inference_and_the_cpu(name):
    model = architecture(name)
    x = images(2, 3, 16, seed=7)
    on_cpu = vx.explain(model, x, method="occlusion", window=(5, 3), stride=(3, 1), baseline=0.3)
    gpu_model = architecture(name).cuda()
    before = snapshot(gpu_model)
    incremental = vx.explain(gpu_model, x, method="occlusion", window=(5, 3), stride=(3, 1), baseline=0.3, engine="incremental")
    full = vx.explain(gpu_model, x, method="occlusion", window=(5, 3), stride=(3, 1), baseline=0.3, engine="torch")
    assert incremental.options["engine"] == "incremental" and "engine_fallback" not in incremental.options
    np.testing.assert_allclose(incremental.maps, full.maps, rtol=0, atol=ATOL)
    np.testing.assert_allclose(incremental.maps, on_cpu.maps, rtol=0, atol=ATOL)
    assert_untouched(gpu_model, before)
    assert all(p.device.type == "cuda" for p in gpu_model.parameters())


@pytest.mark.parametrize("batch_size", [1, 2, 4, 16])
def test_batch_size_does_not_change_cuda_maps(batch_size):
    model = architecture("residual").cuda()
    x = images(3, 3, 16, seed=9)
    reference = vx.explain(model, x, method="occlusion", window=4, stride=2, engine="torch", batch_size=16)
    exp = vx.explain(model, x, method="occlusion", window=4, stride=2, batch_size=batch_size, engine="incremental")
    np.testing.assert_allclose(exp.maps, reference.maps, rtol=0, atol=ATOL)


def test_cuda_occlusion_agrees_with_captum():
    from captum.attr import Occlusion

    model = architecture("residual").cuda()
    x = images(2, 3, 16, seed=3)
    exp = vx.explain(model, x, method="occlusion", window=4, stride=4, engine="incremental")
    inputs = torch.from_numpy(x).cuda()
    reference = Occlusion(model).attribute(inputs, sliding_window_shapes=(3, 4, 4), strides=(3, 4, 4), baselines=0,
                                           target=torch.from_numpy(exp.targets).cuda())
    np.testing.assert_allclose(exp.maps, reference[:, 0].cpu().numpy(), rtol=0, atol=ATOL)


def test_incremental_scores_never_synchronise_with_the_gpu():
    model = architecture("residual").cuda()
    engine = incremental_engine(model)
    image = torch.from_numpy(images(1, 3, 16, seed=2)).cuda()
    (clean,), _ = engine.clean_passes(image)
    tops, lefts = torch.tensor([0, 4, 8, 12]), torch.tensor([12, 8, 4, 0])
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        engine.scores(clean, tops, lefts, (4, 4), 0.0)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_box_scorers_never_synchronise_with_the_gpu_per_batch():
    from vexplain.core.api import adapt

    adapter = adapt(architecture("residual").cuda())
    image = torch.from_numpy(images(1, 3, 16, seed=2)).cuda()
    (scorer,) = adapter.box_scorers(image, (4, 4), 0.0, "incremental")
    tops, lefts = torch.tensor([0, 4, 8, 12]), torch.tensor([12, 8, 4, 0])  # as occlusion passes them: on the CPU
    scorer.run(tops, lefts)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        scorer.run(tops, lefts)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_gpu_batches_come_from_free_memory():
    exp = vx.explain(architecture("small_cnn").cuda(), images(1, 3, 16), method="occlusion", window=2, stride=1)
    assert exp.options["batch_size"] == 1024  # a quarter of free memory holds more: the GPU cap (the CPU's is 256)
    budget = vx.explain(architecture("small_cnn").cuda(), images(1, 3, 16), method="occlusion", window=2, stride=1, memory_mb=12)
    assert budget.options["batch_size"] == 128  # 12 MB / (3 * 16 * 16 * 4 bytes * 32)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_on_cuda_reports_its_error(precision):
    model = architecture("residual").cuda()
    x = images(2, 3, 16, seed=7)
    exact = vx.explain(model, x, method="occlusion", window=4, stride=2)
    reduced = vx.explain(model, x, method="occlusion", window=4, stride=2, precision=precision, engine="incremental")
    assert reduced.options["engine"] == "incremental" and reduced.options["approximate"] is True
    assert 0 < reduced.options["precision_error"] < 0.05
    assert np.abs(reduced.maps - exact.maps).max() <= 4 * reduced.options["precision_error"]


def test_auto_runs_small_images_by_full_inference_and_large_ones_incrementally():
    model = architecture("residual").cuda()
    small = vx.explain(model, images(1, 3, 16), method="occlusion", window=4, stride=4)
    assert small.options["engine"] == "torch" and "batched full inference" in small.options["engine_reason"]
    large = vx.explain(model, images(1, 3, 128), method="occlusion", window=32, stride=32)
    assert large.options["engine"] == "incremental" and "batched full inference" not in large.options["engine_reason"]
    limited = vx.explain(model, images(1, 3, 16), method="occlusion", window=4, stride=4, field_limit=0.5)
    assert limited.options["engine"] == "incremental"
