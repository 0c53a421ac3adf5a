"""The model is never left modified: no hooks, same tensors, no .grad, same training flags, same
device: after every method and after errors raised in the middle of one."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import vexplain as vx
from vexplain.core.adapter import ATTENTION
from models import assert_untouched, hook_counts, images, snapshot, train_flag_cnn

METHODS = [m.name for m in vx.methods() if ATTENTION not in m.requires]  # attention methods: test_vit_rollout.py (a CNN has none)
FAST_OPTIONS = {"occlusion": {"window": 8, "stride": 8}, "extremal_perturbation": {"max_iter": 20}, "guided_ig": {"steps": 20}}


def mixed_mode_model():
    """Train mode overall, with one submodule (the BatchNorm) switched to eval."""
    model = train_flag_cnn()
    model.train()
    model.features[1].eval()
    return model


@pytest.fixture(scope="module")
def x():
    return images(2, size=16, seed=7)


@pytest.mark.parametrize("method", METHODS)
def test_method_leaves_model_untouched(method, x):
    model = mixed_mode_model()
    before = snapshot(model)
    assert hook_counts(model) == {}
    original_x = x.copy()
    exp = vx.explain(model, x, method=method, **FAST_OPTIONS.get(method, {}))
    assert exp.maps.shape == (2, 16, 16)
    assert_untouched(model, before)
    assert model.training and model.drop.training and not model.features[1].training
    np.testing.assert_array_equal(x, original_x)  # inputs are not modified either


@pytest.mark.parametrize("method", METHODS)
def test_method_runs_in_eval_mode(method, x):
    # Dropout(0.5) and BatchNorm batch statistics would change the result in train mode.
    options = FAST_OPTIONS.get(method, {})
    in_train = vx.explain(mixed_mode_model(), x, method=method, targets=[1, 2], **options)
    in_eval = vx.explain(train_flag_cnn().eval(), x, method=method, targets=[1, 2], **options)
    np.testing.assert_allclose(in_train.maps, in_eval.maps, rtol=0, atol=1e-5)
    with torch.no_grad():
        expected_scores = train_flag_cnn().eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(in_train.scores, expected_scores, rtol=0, atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_existing_grads_are_kept(method, x):
    model = train_flag_cnn().eval()
    for parameter in model.parameters():
        parameter.grad = torch.full_like(parameter, 0.25)
    exp = vx.explain(model, x, method=method, **FAST_OPTIONS.get(method, {}))
    assert np.isfinite(exp.maps).all()
    for parameter in model.parameters():
        assert torch.equal(parameter.grad, torch.full_like(parameter, 0.25))
    assert hook_counts(model) == {}


@pytest.mark.parametrize("method", METHODS)
def test_tensor_inputs_are_not_modified(method):
    model = train_flag_cnn().eval()
    x = torch.from_numpy(images(2, size=16, seed=8))
    original = x.clone()
    vx.explain(model, x, method=method, **FAST_OPTIONS.get(method, {}))
    assert torch.equal(x, original) and not x.requires_grad and x.grad is None


@pytest.mark.parametrize("method", METHODS)
def test_untouched_after_target_out_of_range(method, x):
    model = mixed_mode_model()
    before = snapshot(model)
    with pytest.raises(vx.InvalidTarget):
        vx.explain(model, x, method=method, targets=[0, 99], **FAST_OPTIONS.get(method, {}))
    assert_untouched(model, before)


@pytest.mark.parametrize("method", METHODS)
def test_untouched_after_a_layer_raises(method, x):
    model = mixed_mode_model()
    model.boom.armed = True
    before = snapshot(model)
    with pytest.raises(RuntimeError, match="boom"):
        vx.explain(model, x, method=method, **FAST_OPTIONS.get(method, {}))
    assert_untouched(model, before)
    # and it still works once the layer stops raising
    model.boom.armed = False
    assert np.isfinite(vx.explain(model, x, method=method, **FAST_OPTIONS.get(method, {})).maps).all()
    assert_untouched(model, before)


@pytest.mark.parametrize("method", ["cam", "gradcam"])
def test_untouched_after_unknown_or_unsuitable_layer(method, x):
    model = mixed_mode_model()
    before = snapshot(model)
    with pytest.raises(vx.UnknownLayer):
        vx.explain(model, x, method=method, layer="features.9")
    with pytest.raises(vx.VexplainError):
        vx.explain(model, x, method=method, layer="fc")  # 2-D output: not a feature map
    assert_untouched(model, before)


def test_cam_on_a_layer_with_the_wrong_channel_count(x):
    model = mixed_mode_model()
    before = snapshot(model)
    with pytest.raises(vx.InvalidOption, match="channels"):
        vx.explain(model, x, method="cam", layer="features.0")  # 6 channels, classifier takes 8
    assert_untouched(model, before)


def test_untouched_after_wrong_input_channels():
    model = mixed_mode_model()
    before = snapshot(model)
    for method in METHODS:
        with pytest.raises(vx.InvalidInput):
            vx.explain(model, images(1, channels=4, size=16), method=method, **FAST_OPTIONS.get(method, {}))
        assert_untouched(model, before)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("method", METHODS)
def test_cuda_model_stays_on_its_device(method, x):
    model = mixed_mode_model().cuda()
    before = snapshot(model)
    on_gpu = vx.explain(model, x, method=method, **FAST_OPTIONS.get(method, {}))
    assert_untouched(model, before)
    assert all(p.device.type == "cuda" for p in model.parameters())
    if method == "occlusion":
        assert on_gpu.options["engine"] == "torch" and "engine_reason" in on_gpu.options  # small images: batched on the GPU
    on_cpu = vx.explain(mixed_mode_model(), x, method=method, **FAST_OPTIONS.get(method, {}))
    np.testing.assert_allclose(on_gpu.maps, on_cpu.maps, rtol=0, atol=1e-4)
