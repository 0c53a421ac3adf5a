"""Reduced-precision occlusion (opt-in, approximate): labelled, its error measured against float32
by hand, refused where it cannot run, and the model left as it was."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import vexplain as vx
from vexplain.core.similarity import ssim

from incremental_models import architecture
from models import assert_untouched, images, onnx_bytes, seeded_cnn, snapshot

AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}
OPTIONS = dict(window=4, stride=2)


@pytest.fixture(scope="module")
def x():
    return images(2, 3, 16, seed=7)


@pytest.mark.parametrize("engine", ["incremental", "torch"])
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_is_labelled_and_its_error_is_the_clean_score_change(precision, engine, x):
    model = architecture("residual")
    before = snapshot(model)
    exp = vx.explain(model, x, method="occlusion", precision=precision, engine=engine, **OPTIONS)
    with torch.no_grad():
        exact = model(torch.from_numpy(x))
        with torch.autocast("cpu", dtype=AUTOCAST[precision]):
            reduced = model(torch.from_numpy(x)).float()
    expected_error = float((exact - reduced).abs().max())
    assert exp.options["engine"] == engine and exp.options["precision"] == precision
    assert exp.options["approximate"] is True
    assert exp.options["precision_error"] == pytest.approx(expected_error, rel=1e-6) and expected_error > 0
    np.testing.assert_allclose(exp.scores, reduced.numpy(), rtol=0, atol=1e-6)
    exact_map = vx.explain(model, x, method="occlusion", **OPTIONS).maps
    # each drop is a difference of two reduced-precision scores
    assert np.abs(exp.maps - exact_map).max() <= 4 * expected_error
    assert min(ssim(exp.maps[i], exact_map[i]) for i in range(len(x))) >= 0.95
    assert_untouched(model, before)
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_float32_is_the_default_and_exact(x):
    exp = vx.explain(architecture("residual"), x, method="occlusion", **OPTIONS)
    assert exp.options["approximate"] is False and "precision_error" not in exp.options


def test_incremental_and_full_inference_agree_in_reduced_precision(x):
    model = architecture("branches")
    incremental = vx.explain(model, x, method="occlusion", precision="fp16", engine="incremental", **OPTIONS)
    full = vx.explain(model, x, method="occlusion", precision="fp16", engine="torch", **OPTIONS)
    assert incremental.options["precision_error"] == full.options["precision_error"]
    np.testing.assert_allclose(incremental.maps, full.maps, rtol=0, atol=4 * incremental.options["precision_error"] + 1e-6)


def test_a_model_incremental_occlusion_cannot_trace_falls_back_to_torch_in_reduced_precision():
    from models import LinearNet

    exp = vx.explain(LinearNet(np.ones((2, 48))), images(1, 3, 4), method="occlusion", window=2, stride=1, precision="bf16")
    assert exp.options["engine"] == "torch" and "first layer" in exp.options["engine_fallback"]
    assert exp.options["precision"] == "bf16"


def test_onnx_cannot_run_in_reduced_precision(x):
    model = seeded_cnn(seed=1)
    with pytest.raises(vx.UnsupportedCapability, match="precision 'bf16' with engine 'onnx'.*engine 'auto', 'incremental' or 'torch'"):
        vx.explain(model, x, method="occlusion", precision="bf16", engine="onnx", **OPTIONS)
    with pytest.raises(vx.UnsupportedCapability, match="precision 'fp16'.*PyTorch models only"):
        vx.explain(onnx_bytes(model, (3, 16, 16)), x, method="occlusion", precision="fp16", **OPTIONS)


def test_unknown_precision_is_refused_with_the_choices(x):
    with pytest.raises(vx.InvalidOption, match="precision.*'fp32', 'bf16', 'fp16'"):
        vx.explain(seeded_cnn(), x, method="occlusion", precision="int8", **OPTIONS)
