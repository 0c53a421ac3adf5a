"""Targets, inputs, method names, layers and options: what is accepted, and the one-line errors
for what is not."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import vexplain as vx
from vexplain.core.adapter import ATTENTION
from models import LinearNet, images, onnx_bytes, seeded_cnn

METHODS = [m.name for m in vx.methods() if ATTENTION not in m.requires]  # attention methods: test_vit_rollout.py (a CNN has none)
FAST_OPTIONS = {"occlusion": {"window": 8, "stride": 8}, "extremal_perturbation": {"max_iter": 20}, "guided_ig": {"steps": 20}}


@pytest.fixture(scope="module")
def model():
    return seeded_cnn(seed=0)


@pytest.fixture(scope="module")
def x():
    return images(3, size=16, seed=9)


@pytest.fixture(scope="module")
def top(model, x):
    with torch.no_grad():
        top = model(torch.from_numpy(x)).argmax(1).numpy()
    assert len(set(top.tolist())) > 1  # argmax per input, not one class for all
    return top


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert message and "\n" not in message and "\r" not in message, f"not one line: {message!r}"
    return message


# --------------------------------------------------------------------------------- targets


@pytest.mark.parametrize("method", METHODS)
def test_none_means_each_inputs_top_class(model, x, top, method):
    exp = vx.explain(model, x, method=method, **FAST_OPTIONS.get(method, {}))
    assert exp.targets.dtype == np.int64 and exp.targets.tolist() == top.tolist()
    assert exp.options["targets"] == "top"
    np.testing.assert_array_equal(exp.scores.argmax(1), top)


@pytest.mark.parametrize(
    "targets, expected",
    [
        (2, [2, 2, 2]),
        (np.int64(4), [4, 4, 4]),
        (torch.tensor(1), [1, 1, 1]),
        ([0, 3, 1], [0, 3, 1]),
        ((4, 4, 0), [4, 4, 0]),
        (np.array([1, 0, 2], dtype=np.int32), [1, 0, 2]),
        (torch.tensor([2, 4, 3]), [2, 4, 3]),
    ],
)
def test_target_forms(model, x, targets, expected):
    exp = vx.explain(model, x, method="saliency", targets=targets)
    assert exp.targets.tolist() == expected
    # the map is the one for that class: compare with each input explained alone
    for i, target in enumerate(expected):
        alone = vx.explain(model, x[i], method="saliency", targets=target)
        np.testing.assert_allclose(exp.maps[i], alone.maps[0], rtol=0, atol=1e-6)


def test_targets_select_different_maps(model, x):
    a = vx.explain(model, x, method="gradcam", targets=0)
    b = vx.explain(model, x, method="gradcam", targets=1)
    assert np.abs(a.maps - b.maps).max() > 1e-4


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    "targets, pattern",
    [
        ([1, 2], "2 entries but there are 3 inputs"),
        ([1, 2, 3, 4], "4 entries but there are 3 inputs"),
        (np.array([1]), "1 entries"),
        (5, "out of range"),
        (-1, "out of range"),
        ([0, 1, 7], "out of range"),
        (1.0, "float"),
        ([1.0, 2.0, 0.0], "ints"),
        ("1", "str"),
        (True, "bool"),
        (np.array([[1, 2, 0]]), "1-D"),
        (torch.tensor([0.0, 1.0, 2.0]), "ints"),
    ],
)
def test_bad_targets(model, x, method, targets, pattern):
    with pytest.raises(vx.InvalidTarget) as caught:
        vx.explain(model, x, method=method, targets=targets, **FAST_OPTIONS.get(method, {}))
    assert pattern in one_line(caught)


def test_out_of_range_names_the_valid_range(model, x):
    with pytest.raises(vx.InvalidTarget) as caught:
        vx.explain(model, x, method="cam", targets=5)
    assert "0..4" in one_line(caught)


def test_bad_targets_on_onnx(x):
    adapter = vx.adapt(onnx_bytes(seeded_cnn(seed=0), (3, 16, 16)))
    for method in ("cam", "occlusion"):
        with pytest.raises(vx.InvalidTarget):
            vx.explain(adapter, x, method=method, targets=[0, 9, 1], **FAST_OPTIONS.get(method, {}))
        with pytest.raises(vx.InvalidTarget):
            vx.explain(adapter, x, method=method, targets=[0, 1], **FAST_OPTIONS.get(method, {}))


# ---------------------------------------------------------------------------------- inputs


@pytest.mark.parametrize("method", METHODS)
def test_single_chw_image(model, x, method):
    options = FAST_OPTIONS.get(method, {})
    single = vx.explain(model, x[1], method=method, **options)
    batch = vx.explain(model, x, method=method, **options)
    assert single.maps.shape == (1, 16, 16) and single.targets.shape == (1,)
    np.testing.assert_allclose(single.maps[0], batch.maps[1], rtol=0, atol=1e-5)


def test_torch_and_float64_inputs(model, x):
    reference = vx.explain(model, x, method="saliency")
    for given in (torch.from_numpy(x), x.astype(np.float64), torch.from_numpy(x).double()):
        np.testing.assert_allclose(vx.explain(model, given, method="saliency").maps, reference.maps, rtol=0, atol=1e-6)


def with_nan(x):
    bad = x.copy()
    bad[0, 1, 2, 3] = np.nan
    return bad


def with_inf(x):
    bad = x.copy()
    bad[2, 0, 0, 0] = -np.inf
    return bad


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    "make, pattern",
    [
        (lambda x: x[0, 0], "shape"),  # (H, W)
        (lambda x: x[None], "shape"),  # 5-D
        (lambda x: x.reshape(-1), "shape"),
        (lambda x: images(1, channels=4, size=16), "channels"),
        (lambda x: images(1, channels=1, size=16), "channels"),
        (with_nan, "NaN"),
        (with_inf, "infinite"),
        (lambda x: (x * 50).clip(0, 255).astype(np.uint8), "uint8"),
        (lambda x: torch.from_numpy(x).to(torch.int64), "int64"),
        (lambda x: x[:0], "empty"),
        (lambda x: np.zeros((1, 3, 0, 16), dtype=np.float32), "empty"),
        (lambda x: x.tolist(), "numpy array or a torch tensor"),
    ],
)
def test_bad_inputs(model, x, method, make, pattern):
    with pytest.raises(vx.InvalidInput) as caught:
        vx.explain(model, make(x), method=method, **FAST_OPTIONS.get(method, {}))
    assert pattern in one_line(caught)


def test_wrong_channels_on_onnx(x):
    adapter = vx.adapt(onnx_bytes(seeded_cnn(seed=0), (3, 16, 16)))
    with pytest.raises(vx.InvalidInput) as caught:
        vx.explain(adapter, images(2, channels=1, size=16), method="cam")
    assert "takes 3" in one_line(caught)


def test_wrong_channels_on_a_model_without_conv():
    # no convolution to read a channel count from: the classifier's feature count is named instead
    model = LinearNet(np.ones((2, 12)))
    with pytest.raises(vx.InvalidInput) as caught:
        vx.explain(model, np.ones((1, 2, 2, 2), dtype=np.float32), method="saliency")
    assert "takes 12 features but got 8" in one_line(caught)


# ----------------------------------------------------------------- methods, layers, options


def test_unknown_method_suggests(model, x):
    with pytest.raises(vx.UnknownMethod) as caught:
        vx.explain(model, x, method="gradcm")
    message = one_line(caught)
    assert "did you mean: gradcam" in message
    for name in METHODS:
        assert name in message  # lists what is registered


def test_unknown_method_without_close_match(model, x):
    with pytest.raises(vx.UnknownMethod) as caught:
        vx.explain(model, x, method="zzzz")
    assert "did you mean" not in one_line(caught)


@pytest.mark.parametrize("method", ["cam", "gradcam"])
def test_unknown_layer_names_nearest(model, x, method):
    with pytest.raises(vx.UnknownLayer) as caught:
        vx.explain(model, x, method=method, layer="features.5")
    message = one_line(caught)
    assert "features.5" in message and "did you mean" in message
    assert "features.2" in message or "features.3" in message
    with pytest.raises(vx.UnknownLayer) as caught:
        vx.explain(model, x, method=method, layer="featurs")
    assert "did you mean: features" in one_line(caught)


def test_unknown_layer_on_onnx(x):
    with pytest.raises(vx.UnknownLayer) as caught:
        vx.explain(onnx_bytes(seeded_cnn(seed=0), (3, 16, 16)), x, method="cam", layer="features.5")
    one_line(caught)


@pytest.mark.parametrize(
    "method, options, pattern",
    [
        ("occlusion", {"window": "big"}, "option 'window'"),
        ("occlusion", {"window": 0}, "option 'window'"),
        ("occlusion", {"window": (2, 2, 2)}, "option 'window'"),
        ("occlusion", {"stride": 1.5}, "option 'stride'"),
        ("occlusion", {"baseline": "grey"}, "option 'baseline'"),
        ("occlusion", {"batch_size": 0}, "option 'batch_size'"),
        ("occlusion", {"engine": "tensorrt"}, "option 'engine'"),
        ("occlusion", {"window": 32}, "larger than the image"),
        ("saliency", {"abs": 1}, "option 'abs'"),
        ("saliency", {"abs": "yes"}, "option 'abs'"),
        ("saliency", {"reduce": "median"}, "option 'reduce'"),
        ("saliency", {"window": 4}, "has no option 'window'"),
        ("saliency", {"ab": True}, "did you mean: abs"),
        ("cam", {"layer": 3}, "option 'layer'"),
        ("gradcam", {"layr": "features"}, "did you mean: layer"),
    ],
)
def test_bad_options(model, x, method, options, pattern):
    with pytest.raises(vx.InvalidOption) as caught:
        vx.explain(model, x, method=method, **options)
    assert pattern in one_line(caught)


@pytest.mark.parametrize("method", METHODS)
def test_unknown_option_for_every_method(model, x, method):
    with pytest.raises(vx.InvalidOption) as caught:
        vx.explain(model, x, method=method, no_such_option=1)
    assert "no_such_option" in one_line(caught)


def test_errors_are_typed():
    assert issubclass(vx.InvalidInput, vx.VexplainError) and issubclass(vx.InvalidInput, ValueError)
    assert issubclass(vx.InvalidTarget, vx.VexplainError)
    assert issubclass(vx.InvalidOption, vx.VexplainError)
    assert issubclass(vx.UnknownMethod, LookupError) and issubclass(vx.UnknownLayer, LookupError)
    assert issubclass(vx.UnsupportedCapability, vx.VexplainError)
    assert issubclass(vx.ModelLoadError, vx.VexplainError)
