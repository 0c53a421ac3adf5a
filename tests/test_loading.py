"""vx.adapt on files, factories and sessions: what loads, what is refused, and how."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import vexplain as vx
from models import images, onnx_bytes, seeded_cnn

ATOL = 1e-5
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")


@pytest.fixture(scope="module")
def x():
    return images(2, size=16, seed=12)


def one_line(caught) -> str:
    message = str(caught.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------------ factory + weights


def test_factory_with_state_dict(tmp_path, x):
    weights = tmp_path / "weights.pt"
    torch.save(seeded_cnn(seed=7).state_dict(), weights)
    adapter = vx.adapt("models:seeded_cnn", weights=str(weights))
    assert adapter.backend == "torch" and "models:seeded_cnn" in adapter.describe()
    for method in ("gradcam", "saliency"):
        loaded = vx.explain(adapter, x, method=method)
        direct = vx.explain(seeded_cnn(seed=7), x, method=method)
        np.testing.assert_allclose(loaded.maps, direct.maps, rtol=0, atol=ATOL)
    # without weights the factory's own (seed 0) model is used, which differs
    plain = vx.explain(vx.adapt("models:seeded_cnn"), x, method="saliency")
    assert np.abs(plain.maps - vx.explain(adapter, x, method="saliency").maps).max() > 1e-4


def test_factory_with_path_object_weights(tmp_path, x):
    weights = tmp_path / "w.pth"
    torch.save(seeded_cnn(seed=8).state_dict(), weights)
    loaded = vx.explain(vx.adapt("models:seeded_cnn", weights=weights), x, method="cam")
    np.testing.assert_allclose(loaded.maps, vx.explain(seeded_cnn(seed=8), x, method="cam").maps, rtol=0, atol=ATOL)


@pytest.mark.parametrize(
    "spec, pattern",
    [
        ("no_such_module_xyz:build", "cannot import"),
        ("models:no_such_factory", "no callable"),
        ("models:not_a_model", "not a torch.nn.Module"),
    ],
)
def test_factory_errors(spec, pattern):
    with pytest.raises(vx.ModelLoadError) as caught:
        vx.adapt(spec)
    assert pattern in one_line(caught)


def test_weights_that_do_not_fit(tmp_path):
    weights = tmp_path / "wide.pt"
    torch.save(seeded_cnn(width=4).state_dict(), weights)
    with pytest.raises(vx.ModelLoadError) as caught:
        vx.adapt("models:seeded_cnn", weights=str(weights))
    assert "do not fit" in one_line(caught)


def test_weights_holding_a_pickled_model_are_refused(tmp_path):
    path = tmp_path / "full.pt"
    torch.save(seeded_cnn(), path)
    with pytest.raises(vx.ModelLoadError) as caught:
        vx.adapt("models:seeded_cnn", weights=str(path))
    assert "state_dict" in one_line(caught)


def test_missing_weights_file(tmp_path):
    with pytest.raises(vx.ModelLoadError) as caught:
        vx.adapt("models:seeded_cnn", weights=str(tmp_path / "missing.pt"))
    assert "not found" in one_line(caught)


# ------------------------------------------------------------------------------ TorchScript


@pytest.mark.parametrize("compile_with", ["script", "trace"])
def test_torchscript_file_supports_saliency_and_occlusion(tmp_path, x, compile_with):
    model = seeded_cnn(seed=4)
    example = torch.zeros(1, 3, 16, 16)
    compiled = torch.jit.script(model) if compile_with == "script" else torch.jit.trace(model, example)
    path = tmp_path / "model.pt"
    compiled.save(str(path))
    adapter = vx.adapt(str(path))
    assert adapter.backend == "torch" and "TorchScript" in adapter.describe()
    for method, options in (("saliency", {}), ("occlusion", {"window": 4, "stride": 4})):
        loaded = vx.explain(adapter, x, method=method, **options)
        eager = vx.explain(model, x, method=method, **options)
        np.testing.assert_allclose(loaded.maps, eager.maps, rtol=0, atol=1e-4 if method == "occlusion" else ATOL)
        assert loaded.targets.tolist() == eager.targets.tolist()
    assert vx.explain(adapter, x, method="occlusion", window=8).options["engine"] == "torch"
    with pytest.raises(vx.UnsupportedCapability) as caught:
        vx.explain(adapter, x, method="gradcam")
    message = one_line(caught)
    assert "occlusion" in message and "saliency" in message


def test_torchscript_module_object(x):
    model = seeded_cnn(seed=4)
    scripted = torch.jit.script(model)
    np.testing.assert_allclose(
        vx.explain(scripted, x, method="saliency").maps, vx.explain(model, x, method="saliency").maps, rtol=0, atol=ATOL
    )


# --------------------------------------------------------------------------- refused files


def test_pickled_full_model_is_refused(tmp_path):
    path = tmp_path / "full.pt"
    torch.save(seeded_cnn(), path)
    with pytest.raises(vx.ModelLoadError) as caught:
        vx.adapt(str(path))
    assert "state_dict" in one_line(caught)


def test_state_dict_file_as_model_points_to_factory(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(seeded_cnn().state_dict(), path)
    with pytest.raises(vx.ModelLoadError) as caught:
        vx.adapt(str(path))
    message = one_line(caught)
    assert "state_dict" in message and "factory" in message


@pytest.mark.parametrize(
    "content",
    [b"this is not an onnx model", b"", bytes(range(256)) * 4, b"\x08\x07\x12\x04test"],
    ids=["text", "empty", "binary", "proto-without-graph"],
)
def test_corrupt_onnx_file(tmp_path, content):
    path = tmp_path / "broken.onnx"
    path.write_bytes(content)
    with pytest.raises(vx.ModelLoadError) as caught:
        vx.adapt(str(path))
    one_line(caught)
    with pytest.raises(vx.ModelLoadError):
        vx.adapt(content)


def test_torch_archive_named_onnx(tmp_path):
    path = tmp_path / "model.onnx"
    torch.jit.script(seeded_cnn()).save(str(path))
    with pytest.raises(vx.ModelLoadError) as caught:
        vx.adapt(str(path))
    one_line(caught)


@pytest.mark.parametrize("name", ["missing.onnx", "missing.pt", "missing.ts"])
def test_missing_file(tmp_path, name):
    with pytest.raises(vx.ModelLoadError) as caught:
        vx.adapt(str(tmp_path / name))
    assert "not found" in one_line(caught)


def test_unsupported_object():
    with pytest.raises(vx.ModelLoadError) as caught:
        vx.adapt(42)
    assert "int" in one_line(caught)


def test_explain_with_missing_file_raises_model_load_error(tmp_path, x):
    with pytest.raises(vx.ModelLoadError):
        vx.explain(str(tmp_path / "missing.onnx"), x, method="cam")


# ----------------------------------------------------------------------------- ONNX sources


def test_onnx_sources_and_adapter_passthrough(tmp_path, x):
    import onnx
    import onnxruntime as ort

    data = onnx_bytes(seeded_cnn(seed=2), (3, 16, 16))
    path = tmp_path / "model.onnx"
    path.write_bytes(data)
    reference = vx.explain(seeded_cnn(seed=2), x, method="cam")
    for source in (data, str(path), path, onnx.load_from_string(data)):
        adapter = vx.adapt(source)
        assert adapter.backend == "onnx" and vx.adapt(adapter) is adapter
        np.testing.assert_allclose(vx.explain(adapter, x, method="cam").maps, reference.maps, rtol=0, atol=1e-4)
    # a session built from bytes has no readable graph: forward only
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    occlusion = vx.explain(session, x, method="occlusion", window=8, stride=8)
    expected = vx.explain(seeded_cnn(seed=2), x, method="occlusion", window=8, stride=8, engine="torch")
    np.testing.assert_allclose(occlusion.maps, expected.maps, rtol=0, atol=1e-4)
    with pytest.raises(vx.UnsupportedCapability) as caught:
        vx.explain(session, x, method="cam")
    assert "occlusion" in one_line(caught)
