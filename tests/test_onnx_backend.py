"""PyTorch and ONNX Runtime give the same maps; ONNX limits fail fast; the export cache is safe."""
from __future__ import annotations


import numpy as np
import pytest
import torch

import vexplain as vx
from models import images, onnx_bytes, seeded_cnn

SHAPE = (3, 16, 16)
ATOL = 1e-4


@pytest.fixture(scope="module")
def x():
    return images(3, size=16, seed=4)


@pytest.fixture(scope="module")
def model():
    return seeded_cnn(seed=0)


@pytest.fixture(scope="module")
def exported(model):
    return onnx_bytes(model, SHAPE)


def test_occlusion_engines_agree(x):
    model = seeded_cnn(seed=0)
    by_torch = vx.explain(model, x, method="occlusion", window=4, stride=2, engine="torch")
    by_onnx = vx.explain(model, x, method="occlusion", window=4, stride=2, engine="onnx")
    assert by_torch.options["engine"] == "torch" and by_onnx.options["engine"] == "onnx"
    assert np.abs(by_torch.maps).max() > 1e-2
    np.testing.assert_allclose(by_onnx.maps, by_torch.maps, rtol=0, atol=ATOL)
    np.testing.assert_allclose(by_onnx.scores, by_torch.scores, rtol=0, atol=ATOL)
    assert by_onnx.targets.tolist() == by_torch.targets.tolist()


def test_auto_engines_on_cpu_are_incremental_for_occlusion_and_onnx_for_batched_forwards(x):
    exp = vx.explain(seeded_cnn(seed=0), x, method="occlusion", window=4, stride=4)
    assert exp.options["engine"] == "incremental" and exp.options["backend"] == "torch"
    assert vx.adapt(seeded_cnn(seed=0)).scorer("auto", sample=torch.as_tensor(x[:1])).engine == "onnx"


@pytest.mark.parametrize("method, options", [("cam", {}), ("occlusion", {"window": 4, "stride": 2})])
@pytest.mark.parametrize("source", ["bytes", "path", "session"])
def test_exported_model_matches_torch(model, exported, x, tmp_path, method, options, source):
    if source == "bytes":
        onnx_model = exported
    else:
        path = tmp_path / "model.onnx"
        path.write_bytes(exported)
        if source == "path":
            onnx_model = str(path)
        else:
            import onnxruntime as ort

            onnx_model = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    by_onnx = vx.explain(onnx_model, x, method=method, **options)
    by_torch = vx.explain(model, x, method=method, engine="torch", **options) if method == "occlusion" else vx.explain(model, x, method=method)
    assert by_onnx.options["backend"] == "onnx"
    assert by_onnx.targets.tolist() == by_torch.targets.tolist()
    np.testing.assert_allclose(by_onnx.scores, by_torch.scores, rtol=0, atol=ATOL)
    np.testing.assert_allclose(by_onnx.maps, by_torch.maps, rtol=0, atol=ATOL)
    if method == "cam":
        np.testing.assert_allclose(by_onnx.layer_maps, by_torch.layer_maps, rtol=0, atol=ATOL)
        assert (by_onnx.layer_maps < 0).any()


def test_onnx_cam_with_explicit_targets_and_layer(model, exported, x):
    adapter = vx.adapt(exported)
    layer = adapter.default_cam_layer()
    assert layer in adapter.layers()
    by_onnx = vx.explain(adapter, x, method="cam", targets=[4, 1, 0], layer=layer)
    by_torch = vx.explain(model, x, method="cam", targets=[4, 1, 0])
    assert by_onnx.options["layer"] == layer
    np.testing.assert_allclose(by_onnx.maps, by_torch.maps, rtol=0, atol=ATOL)
    # the weights read from the graph are the Linear's
    np.testing.assert_allclose(adapter.classifier_weights().numpy(), model.fc.weight.detach().numpy(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("method, options", [("cam", {}), ("occlusion", {"window": 4, "stride": 4})])
def test_fixed_batch_onnx_model_runs_item_by_item(model, x, method, options):
    fixed = vx.adapt(onnx_bytes(model, SHAPE, dynamic_batch=False))
    assert fixed.fixed_batch == 1
    by_onnx = vx.explain(fixed, x, method=method, **options)  # 3 inputs through a batch-1 graph
    by_torch = vx.explain(model, x, method=method, **({**options, "engine": "torch"} if method == "occlusion" else options))
    assert by_onnx.maps.shape == (3, 16, 16)
    np.testing.assert_allclose(by_onnx.maps, by_torch.maps, rtol=0, atol=ATOL)
    np.testing.assert_allclose(by_onnx.scores, by_torch.scores, rtol=0, atol=ATOL)
    if method == "occlusion":
        assert by_onnx.options["fixed_batch"] == 1


@pytest.mark.parametrize("method", ["saliency", "gradcam"])
def test_gradient_methods_on_onnx_fail_fast(exported, method, monkeypatch):
    """Refused before any work: ONNX Runtime never runs (no timing, so a cold registry or a busy machine cannot fail it)."""
    import vexplain.adapters.onnx as onnx_adapter

    adapter = vx.adapt(exported)
    big = np.zeros((256, 3, 16, 16), dtype=np.float32)
    runs = []
    monkeypatch.setattr(onnx_adapter, "run_batched", lambda *args, **kwargs: runs.append(args) or pytest.fail("the model ran"))
    with pytest.raises(vx.UnsupportedCapability) as caught:
        vx.explain(adapter, big, method=method)
    assert runs == []
    message = str(caught.value)
    assert "\n" not in message
    working = message.split("methods that work on this model:")[1]
    assert "cam" in working and "occlusion" in working
    assert "saliency" not in working and "gradcam" not in working
    assert caught.value.capability in ("gradients", "activation_gradients")


def test_torch_engine_refused_on_onnx_model(exported, x):
    with pytest.raises(vx.UnsupportedCapability, match="engine"):
        vx.explain(exported, x, method="occlusion", engine="torch")


# ---------------------------------------------------------------------------- export cache


def occlude(model, x, engine="onnx"):
    return vx.explain(model, x, method="occlusion", window=8, stride=8, engine=engine)


def test_export_cache_reused_and_invalidated_by_in_place_change(x):
    model = seeded_cnn(seed=5)
    first = occlude(model, x)
    second = occlude(model, x)
    assert first.options["export_cached"] is False
    assert second.options["export_cached"] is True
    np.testing.assert_array_equal(first.maps, second.maps)
    with torch.no_grad():
        model.fc.weight.mul_(-2.0)
        model.features[0].weight.add_(0.1)
    changed = occlude(model, x)
    assert changed.options["export_cached"] is False
    np.testing.assert_allclose(changed.maps, occlude(model, x, engine="torch").maps, rtol=0, atol=ATOL)
    assert np.abs(changed.maps - first.maps).max() > 1e-2
    assert occlude(model, x).options["export_cached"] is True


def test_export_cache_invalidated_by_load_state_dict_and_input_shape(x):
    model = seeded_cnn(seed=5)
    occlude(model, x)
    model.load_state_dict(seeded_cnn(seed=6).state_dict())
    changed = occlude(model, x)
    assert changed.options["export_cached"] is False
    np.testing.assert_allclose(changed.maps, occlude(seeded_cnn(seed=6), x, engine="torch").maps, rtol=0, atol=ATOL)
    other_size = vx.explain(model, images(2, size=24), method="occlusion", window=8, stride=8, engine="onnx")
    assert other_size.options["export_cached"] is False


def test_export_cache_invalidated_by_training_step(x):
    model = seeded_cnn(seed=5)
    occlude(model, x)
    model(torch.from_numpy(x)).sum().backward()
    with torch.no_grad():  # what an SGD step does (torch.optim itself imports torch._dynamo: seconds)
        for parameter in model.parameters():
            parameter.add_(parameter.grad, alpha=-0.5)
    model.zero_grad(set_to_none=True)
    changed = occlude(model, x)
    assert changed.options["export_cached"] is False
    np.testing.assert_allclose(changed.maps, occlude(model, x, engine="torch").maps, rtol=0, atol=ATOL)


def test_export_cache_sees_edits_through_data(x):
    model = seeded_cnn(seed=5)
    occlude(model, x)
    model.fc.weight.data.mul_(-2.0)
    changed = occlude(model, x)
    np.testing.assert_allclose(changed.maps, occlude(model, x, engine="torch").maps, rtol=0, atol=ATOL)
