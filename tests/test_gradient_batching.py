"""The gradient family's batching and safety: batch sizes 1, 2, 4, 16 and the ``batch_size``
option change nothing (seeded SmoothGrad included), the model is left as it was after an error
in the middle of a call (no hooks, no .grad, training flags, no guided-ReLU mode left active), and
backends without gradients refuse before any work."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import vexplain as vx
from models import assert_untouched, close, images, onnx_bytes, seeded_cnn, snapshot, train_flag_cnn

METHODS = ["input_x_gradient", "integrated_gradients", "guided_backprop", "guided_gradcam", "smoothgrad"]
pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor .* did not already require gradients", "ignore:Setting backward hooks")



# ------------------------------------------------------------------------------- batching

N = 16


@pytest.fixture(scope="module")
def batch():
    return seeded_cnn(seed=2), images(N, size=12, seed=3)


FAST = {"integrated_gradients": {"steps": 6}, "smoothgrad": {"samples": 5, "seed": 11}}


@pytest.mark.parametrize("method", METHODS)
def test_batch_sizes_give_the_same_maps(batch, method):
    model, x = batch
    options = FAST.get(method, {})
    whole = vx.explain(model, x, method=method, **options)
    assert len(set(whole.targets.tolist())) > 1
    for size in (1, 2, 4, 16):
        parts = [vx.explain(model, x[s : s + size], method=method, **options) for s in range(0, N, size)]
        close(np.concatenate([p.maps for p in parts]), whole.maps, atol=1e-6)
        close(np.concatenate([p.attributions for p in parts]), whole.attributions, atol=1e-6)
        adapter = vx.adapt(model, batch_size=size)
        close(vx.explain(adapter, x, method=method, **options).maps, whole.maps, atol=1e-6)


@pytest.mark.parametrize("method", ["integrated_gradients", "smoothgrad"])
@pytest.mark.parametrize("batch_size", [1, 7, 200])
def test_batch_size_option_does_not_change_maps(batch, method, batch_size):
    model, x = batch
    options = FAST[method]
    reference = vx.explain(model, x[:3], method=method, **options)
    exp = vx.explain(model, x[:3], method=method, batch_size=batch_size, **options)
    assert exp.options["batch_size"] == batch_size
    close(exp.maps, reference.maps, atol=1e-6)


# ------------------------------------------------------------------------- model safety


@pytest.mark.parametrize("method", METHODS)
def test_untouched_after_an_error_mid_call(method):
    model = train_flag_cnn()
    model.train()
    model.boom.armed = True
    before = snapshot(model)
    x = images(2, size=8, seed=1)
    with pytest.raises(RuntimeError, match="boom"):
        vx.explain(model, x, method=method, **FAST.get(method, {}))
    assert_untouched(model, before)
    assert torch._C._len_torch_function_stack() == 0  # the guided-ReLU mode is gone
    model.boom.armed = False
    ref = seeded_cnn(seed=0)
    saliency = vx.explain(ref, x, method="saliency", abs=False)  # plain gradients again, not guided
    x_t = torch.from_numpy(x).requires_grad_()
    scores = ref(x_t)
    (expected,) = torch.autograd.grad(scores.gather(1, scores.argmax(1, keepdim=True)).sum(), x_t)
    close(saliency.attributions, expected.numpy(), atol=1e-7)


# ----------------------------------------------------------------------------------- ONNX


@pytest.mark.parametrize("method", METHODS)
def test_onnx_models_fail_fast(method):
    onnx = vx.adapt(onnx_bytes(seeded_cnn(seed=0), (3, 8, 8)))
    with pytest.raises(vx.UnsupportedCapability) as caught:
        vx.explain(onnx, np.zeros((64, 3, 8, 8), dtype=np.float32), method=method)
    assert caught.value.capability in ("gradients", "guided_gradients", "activation_gradients")
    assert "\n" not in str(caught.value) and "occlusion" in str(caught.value)


def test_torchscript_offers_gradients_but_not_guided_ones():
    scripted = torch.jit.script(seeded_cnn(seed=0))
    x = images(1, size=8)
    close(vx.explain(scripted, x, method="smoothgrad", samples=2).maps, vx.explain(seeded_cnn(seed=0), x, method="smoothgrad", samples=2).maps, atol=1e-6)
    with pytest.raises(vx.UnsupportedCapability, match="guided_gradients"):
        vx.explain(scripted, x, method="guided_backprop")
    with pytest.raises(vx.UnsupportedCapability, match="smoothgrad's base 'guided_backprop'"):
        vx.explain(scripted, x, method="smoothgrad", base="guided_backprop")


def test_guided_backprop_refuses_relus_it_cannot_reach():
    model = seeded_cnn(seed=0)
    model.features[1] = torch.jit.script(model.features[1])
    before = snapshot(model)
    with pytest.raises(vx.ModelLoadError, match="TorchScript submodule 'features.1'"):
        vx.explain(model, images(1, size=8), method="guided_backprop")
    assert_untouched(model, before)
