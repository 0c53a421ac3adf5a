"""The Explanation object: normalisation, overlays, saving, and the options it records."""
from __future__ import annotations

import numpy as np
import pytest

import vexplain as vx
from vexplain.core.adapter import ATTENTION
from models import HAND_X, HandCamNet, images, quick_options, seeded_cnn

METHODS = [m.name for m in vx.methods() if ATTENTION not in m.requires]  # attention methods: test_vit_rollout.py (a CNN has none)
DECLARED = {m.name: m.options for m in vx.methods()}
FAST_OPTIONS = {**quick_options(), "occlusion": {"window": 4, "stride": 4}}


def explanation(maps) -> vx.Explanation:
    maps = np.asarray(maps, dtype=np.float32)
    n = maps.shape[0]
    return vx.Explanation(
        maps=maps, targets=np.zeros(n, dtype=np.int64), scores=np.zeros((n, 2), dtype=np.float32), method="fake"
    )


@pytest.fixture(scope="module")
def x():
    return images(2, size=16, seed=11)


@pytest.fixture(scope="module")
def model():
    return seeded_cnn(seed=3)


# ---------------------------------------------------------------------------- normalized


def test_normalized_modes_by_hand():
    exp = explanation([[[-1.0, 0.0], [1.0, 3.0]], [[2.0, 2.0], [2.0, 2.0]], [[-4.0, 2.0], [0.0, 1.0]]])
    np.testing.assert_allclose(
        exp.normalized("minmax"),
        [[[0.0, 0.25], [0.5, 1.0]], [[0.0, 0.0], [0.0, 0.0]], [[0.0, 1.0], [4 / 6, 5 / 6]]],  # constant -> zeros
        rtol=0,
        atol=1e-6,
    )
    np.testing.assert_allclose(
        exp.normalized("max"),
        [[[-1 / 3, 0.0], [1 / 3, 1.0]], [[1.0, 1.0], [1.0, 1.0]], [[-1.0, 0.5], [0.0, 0.25]]],  # signs kept
        rtol=0,
        atol=1e-6,
    )
    none = exp.normalized("none")
    np.testing.assert_array_equal(none, exp.maps)
    none[0, 0, 0] = 99  # a copy, not a view
    assert exp.maps[0, 0, 0] == -1.0
    assert exp.normalized().dtype == np.float32
    np.testing.assert_array_equal(exp.normalized(), exp.normalized("minmax"))
    np.testing.assert_array_equal(explanation(np.zeros((1, 2, 2))).normalized("max"), np.zeros((1, 2, 2)))


def test_normalized_bad_mode_is_an_option_error():
    with pytest.raises(vx.InvalidOption):
        explanation(np.ones((1, 2, 2))).normalized("zscore")


def test_normalized_of_a_real_cam():
    exp = vx.explain(HandCamNet(), HAND_X, method="cam")
    # maps span -0.5 .. 3 (see test_hand_computed): minmax = (m + 0.5) / 3.5, max = m / 3
    np.testing.assert_allclose(exp.normalized("minmax"), (exp.maps + 0.5) / 3.5, rtol=0, atol=1e-6)
    np.testing.assert_allclose(exp.normalized("max"), exp.maps / 3.0, rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------- overlay


def test_overlay_shapes_and_blending():
    exp = explanation([[[0.0, 1.0], [2.0, 3.0]], [[1.0, 1.0], [1.0, 1.0]]])
    grey = np.full((2, 2, 2, 3), 100, dtype=np.uint8)
    out = exp.overlay(grey)
    assert out.shape == (2, 2, 2, 3) and out.dtype == np.uint8
    heat = exp.heatmaps()
    assert heat.shape == (2, 2, 2, 3) and heat.dtype == np.uint8
    expected = np.clip(np.round(0.5 * heat.astype(np.float32) + 50.0), 0, 255)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(exp.overlay(grey, alpha=0.0), grey)
    np.testing.assert_array_equal(exp.overlay(grey, alpha=1.0), heat)
    # hot and cold ends of the jet colormap differ
    assert not np.array_equal(heat[0, 0, 0], heat[0, 1, 1])


def test_overlay_float_and_resized_images():
    exp = explanation(np.random.default_rng(0).random((1, 8, 6)))
    as_float = exp.overlay(np.full((8, 6, 3), 0.5, dtype=np.float32))  # a single (H, W, 3) image
    as_uint8 = exp.overlay(np.full((1, 8, 6, 3), 128, dtype=np.uint8))
    assert as_float.shape == (1, 8, 6, 3) and as_float.dtype == np.uint8
    np.testing.assert_array_equal(as_float, as_uint8)  # 0.5 -> 128
    resized = exp.overlay(np.full((1, 16, 12, 3), 128, dtype=np.uint8))
    assert resized.shape == (1, 8, 6, 3)
    np.testing.assert_array_equal(resized, as_uint8)


def test_overlay_errors():
    exp = explanation(np.ones((2, 4, 4)))
    with pytest.raises(vx.InvalidOption):
        exp.overlay(np.zeros((3, 4, 4, 3), dtype=np.uint8))  # 3 images for 2 maps
    with pytest.raises(vx.InvalidOption):
        exp.overlay(np.zeros((2, 4, 4, 3), dtype=np.uint8), alpha=1.5)
    with pytest.raises(vx.InvalidOption):
        exp.overlay(np.zeros((2, 4, 4, 3), dtype=np.uint8), colormap="no_such_map")


def test_overlay_of_real_maps(model, x):
    exp = vx.explain(model, x, method="gradcam")
    rgb = (x.transpose(0, 2, 3, 1) - x.min()) / (x.max() - x.min())
    out = exp.overlay(rgb, colormap="viridis", alpha=0.3)
    assert out.shape == (2, 16, 16, 3) and out.dtype == np.uint8


# ---------------------------------------------------------------------------------- save


@pytest.mark.parametrize("method", METHODS)
def test_save_writes_png_and_raw_npy(model, x, method, tmp_path):
    import cv2

    exp = vx.explain(model, x, method=method, **FAST_OPTIONS.get(method, {}))
    rgb = np.clip(x.transpose(0, 2, 3, 1) * 0.2 + 0.5, 0, 1)
    written = exp.save(tmp_path / "out", ["first", "second"], images=rgb)
    assert sorted(p.name for p in written) == sorted(
        [f"first.{method}.png", f"first.{method}.npy", f"second.{method}.png", f"second.{method}.npy"]
    )
    for i, stem in enumerate(["first", "second"]):
        raw = np.load(tmp_path / "out" / f"{stem}.{method}.npy", allow_pickle=False)
        assert raw.shape == (16, 16) and raw.dtype == np.float32
        np.testing.assert_array_equal(raw, exp.maps[i])  # raw, not normalised
        picture = cv2.imread(str(tmp_path / "out" / f"{stem}.{method}.png"), cv2.IMREAD_UNCHANGED)
        assert picture.shape == (16, 16, 3) and picture.dtype == np.uint8
        np.testing.assert_array_equal(cv2.cvtColor(picture, cv2.COLOR_BGR2RGB), exp.overlay(rgb)[i])


def test_save_single_stem_and_no_images(tmp_path):
    exp = vx.explain(HandCamNet(), np.concatenate([HAND_X, -HAND_X]), method="cam")
    written = exp.save(tmp_path, "img")
    assert sorted(p.name for p in written) == ["img_0.cam.npy", "img_0.cam.png", "img_1.cam.npy", "img_1.cam.png"]
    np.testing.assert_array_equal(np.load(tmp_path / "img_1.cam.npy", allow_pickle=False), exp.maps[1])
    one = vx.explain(HandCamNet(), HAND_X, method="cam")
    assert [p.name for p in one.save(tmp_path, "solo")] == ["solo.cam.png", "solo.cam.npy"]
    with pytest.raises(vx.InvalidOption):
        exp.save(tmp_path, ["a", "b", "c"])


# ------------------------------------------------------------------------------- options


@pytest.mark.parametrize("method", METHODS)
def test_options_record_every_declared_option(model, x, method):
    quick = quick_options().get(method, {})  # the defaults, but for steps that take seconds
    exp = vx.explain(model, x, method=method, **quick)
    declared = {**DECLARED[method], **quick}
    missing = set(declared) - set(exp.options)
    assert not missing, f"exp.options lacks declared options {missing}"
    for name, default in declared.items():
        if default == "auto":  # resolved to the concrete choice, which is what was used
            assert isinstance(exp.options[name], str) and exp.options[name] != "auto", name
        elif default is not None:
            assert exp.options[name] == default, name
    assert exp.options["targets"] == "top" and exp.options["backend"] == "torch"
    assert exp.method == method and len(exp) == 2
    assert exp.timings["total"] >= exp.timings["compute"] > 0
    assert exp.maps.dtype == np.float32 and exp.maps.shape == (2, 16, 16)
    assert exp.scores.dtype == np.float32 and exp.scores.shape == (2, 5)


@pytest.mark.parametrize("method", METHODS)
def test_given_options_are_recorded(model, x, method):
    # every option passed explicitly at its default value is recorded as given
    declared = {k: v for k, v in DECLARED[method].items() if v is not None}
    exp = vx.explain(model, x, method=method, targets=[1, 2], **{**declared, **FAST_OPTIONS.get(method, {})})
    for name, value in {**declared, **FAST_OPTIONS.get(method, {})}.items():
        recorded = exp.options[name]
        if value == "auto":
            assert recorded != "auto", name
        else:
            assert recorded == value or recorded == (value, value), name
    assert exp.options["targets"] == [1, 2]


def test_derived_defaults_are_recorded(model, x):
    occlusion = vx.explain(model, x, method="occlusion")
    assert occlusion.options["window"] == (2, 2) and occlusion.options["stride"] == (1, 1)  # 16 // 8, then // 2
    assert isinstance(occlusion.options["batch_size"], int) and occlusion.options["batch_size"] >= 1
    assert occlusion.options["engine"] in ("incremental", "onnx", "torch") and occlusion.options["engine_reason"]  # auto: timed or by rule, and why
    for method in ("cam", "gradcam"):
        assert vx.explain(model, x, method=method).options["layer"] == "features"
