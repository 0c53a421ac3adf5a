"""Photos of any shape into a model's input (resize + centre crop / letterbox / exact), recorded,
and maps placed back on the photo (core/preprocessing.py, Explanation.map_at_original)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import vexplain as vx
from vexplain.core.errors import InvalidOption
from vexplain.core.preprocessing import Preprocessing, map_to_original, plan, prepare


def photo(height: int = 300, width: int = 451, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


class MeanModel(nn.Module):
    """Score k = k · mean over pixels of channel 0: any input size, gradient known by hand."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x[:, 0].mean(dim=(1, 2))
        return torch.stack([m, 2 * m], dim=1)


def test_centre_crop_box_by_hand():
    # 451 wide × 300 high into 64×64: scale 64/300, resized 96×64 (451·64/300 = 96.2 → 96),
    # crop offset (96 - 64) // 2 = 16 columns, box x 16·451/96 = 75.1667 .. 80·451/96 = 375.8333
    record = plan((300, 451), Preprocessing(size=(64, 64)))
    assert record["resized_size"] == [64, 96]
    assert record["offset"] == [0, -16]
    assert record["input_size"] == [64, 64]
    assert record["crop_box"] == [75.1667, 0.0, 375.8333, 300.0]


def test_imagenet_shorter_side_then_crop_by_hand():
    # 640×480 (w×h), shorter side to 256: 341×256 (640·256/480 = 341.33), crop 224: offsets 16, 58
    spec = Preprocessing(size=(224, 224), resize_shorter=256)
    record = plan((480, 640), spec)
    assert record["resized_size"] == [256, 341]
    assert record["offset"] == [-16, -58]
    x0, y0, x1, y1 = record["crop_box"]
    assert (x0, y0) == (pytest.approx(58 * 640 / 341, abs=1e-4), pytest.approx(16 * 480 / 256, abs=1e-4))
    assert (x1, y1) == (pytest.approx(282 * 640 / 341, abs=1e-4), pytest.approx(240 * 480 / 256, abs=1e-4))


def test_letterbox_pads_with_the_mean_colour():
    # 451×300 into 64×64 fitting inside: scale 64/451, resized 64 wide × 43 high (300·64/451 = 42.57),
    # padding (64 - 43) // 2 = 10 rows on top, 11 below; padding is the mean colour: input value 0
    image = np.full((300, 451, 3), 200, dtype=np.uint8)
    spec = Preprocessing(size=(64, 64), resize="longer", crop="letterbox", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    array, record = prepare(image, spec)
    assert record["resized_size"] == [43, 64] and record["offset"] == [10, 0]
    assert record["crop_box"] == [0.0, 0.0, 451.0, 300.0]
    inside = (200 / 255 - 0.5) / 0.25
    np.testing.assert_allclose(array[:, 10:53], inside, rtol=1e-6)
    assert np.all(array[:, :10] == 0) and np.all(array[:, 53:] == 0)


def test_square_photo_is_only_resized():
    image = photo(128, 128)
    array, record = prepare(image, Preprocessing(size=(64, 64)))
    assert record["offset"] == [0, 0] and record["crop_box"] == [0.0, 0.0, 128.0, 128.0]
    import cv2

    expected = cv2.resize(image, (64, 64), interpolation=cv2.INTER_AREA).astype(np.float32).transpose(2, 0, 1) / 255
    np.testing.assert_allclose(array, expected, atol=1e-6)
    assert vx.prepare_images(image, {"input_size": [64, 64]}).notices() == []


def test_round_trip_of_a_map_placed_in_model_space():
    # a map that is linear in model columns comes back as the same line evaluated at each
    # original pixel's centre (bilinear is exact on linear functions), NaN outside the crop
    record = plan((300, 451), Preprocessing(size=(64, 64)))
    ramp = np.tile(np.arange(64, dtype=np.float32), (64, 1))
    back = map_to_original(ramp, record)
    assert back.shape == (300, 451)
    columns = np.arange(451)
    inside = (columns >= 75) & (columns <= 375)  # centres (x + 0.5)·96/451 in [16, 80)
    assert np.array_equal(np.isfinite(back).all(axis=0), inside)
    assert np.isnan(back[:, ~inside]).all()
    model_x = (columns + 0.5) * 96 / 451 - 16 - 0.5
    interior = inside & (model_x >= 0) & (model_x <= 63)
    np.testing.assert_allclose(back[:, interior], np.broadcast_to(model_x[interior], (300, interior.sum())), atol=2e-3)


def test_letterbox_map_back_drops_the_padding():
    record = plan((300, 451), Preprocessing(size=(64, 64), resize="longer", crop="letterbox"))
    rows = np.repeat(np.arange(64, dtype=np.float32)[:, None], 64, axis=1)
    back = map_to_original(rows, record)
    assert np.isfinite(back).all()
    model_y = (np.arange(300) + 0.5) * 43 / 300 + 10 - 0.5
    np.testing.assert_allclose(back[:, 0], model_y, atol=2e-3)


def test_exact_resize_states_the_changed_aspect_ratio():
    prepared = vx.prepare_images(photo(), {"input_size": [64, 64], "resize": "exact", "crop": "none"})
    (line,) = prepared.notices()
    assert "451×300" in line and "1.50 to 1.00" in line and "squashed" in line
    assert prepared.records[0]["crop_box"] == [0.0, 0.0, 451.0, 300.0]


def test_invalid_pairs_are_one_line_errors():
    with pytest.raises(InvalidOption, match="resize='exact' with crop='center'") as caught:
        Preprocessing(size=(64, 64), resize="exact", crop="center")
    assert "\n" not in str(caught.value)
    with pytest.raises(InvalidOption, match="crop must be one of"):
        Preprocessing(size=(64, 64), crop="middle")


def test_metadata_schema_checks_the_new_keys():
    from vexplain.core.errors import ModelLoadError
    from vexplain.core.model_metadata import check_metadata

    assert check_metadata({"resize": "longer", "crop": "letterbox", "resize_shorter": 256}, "t")["crop"] == "letterbox"
    with pytest.raises(ModelLoadError, match="'crop' must be one of"):
        check_metadata({"crop": "centre"}, "t")


def test_explain_records_preprocessing_and_maps_back():
    # saliency of score 0 = mean(channel 0): every input pixel's gradient is 1 / (64·64)
    photos = [photo(300, 451, 1), photo(300, 451, 2)]
    prepared = vx.prepare_images(photos, {"input_size": [64, 64]})
    exp = vx.explain(MeanModel(), prepared, method="saliency", targets=0)
    assert exp.options["preprocess"] == prepared.records
    assert any("centre-cropped to 64×64" in line for line in exp.warnings)
    back = exp.map_at_original(1)
    assert back.shape == (300, 451)
    np.testing.assert_allclose(back[:, 75:376], 1 / 4096, rtol=1e-5)
    assert np.isnan(back[:, :75]).all() and np.isnan(back[:, 376:]).all()
    overlays = exp.overlay(photos, at="original")
    assert [o.shape for o in overlays] == [(300, 451, 3)] * 2
    assert np.array_equal(overlays[0][:, :75], photos[0][:, :75])  # outside the crop: the photo unblended
    assert not np.array_equal(overlays[0][:, 75:376], photos[0][:, 75:376])
    assert exp.overlay(photos).shape == (2, 64, 64, 3)  # default: model space, as before


def test_map_at_original_without_a_record_says_how():
    exp = vx.explain(MeanModel(), np.zeros((1, 3, 8, 8), np.float32), method="saliency", targets=0)
    with pytest.raises(InvalidOption, match="vx.prepare_images"):
        exp.map_at_original(0)
    with pytest.raises(InvalidOption, match="at must be 'model'"):
        exp.overlay(np.zeros((8, 8, 3), np.uint8), at="photo")


@pytest.mark.parametrize("batch_size", [1, 2, 4, 16])
def test_batch_sizes_change_nothing(batch_size):
    from vexplain.demo.model import demo_adapter

    photos = [photo(300, 451, s) if s % 2 else photo(451, 300, s) for s in range(16)]
    adapter = demo_adapter()
    whole = vx.explain(adapter, vx.prepare_images(photos, adapter), method="saliency", targets=1)
    parts = [vx.explain(adapter, vx.prepare_images(photos[i:i + batch_size], adapter), method="saliency", targets=1) for i in range(0, 16, batch_size)]
    maps = np.concatenate([p.maps for p in parts])
    np.testing.assert_allclose(maps, whole.maps, rtol=1e-5, atol=1e-7)
    originals = [p.map_at_original(i) for p in parts for i in range(len(p))]
    for i, back in enumerate(originals):
        np.testing.assert_array_equal(np.isnan(back), np.isnan(whole.map_at_original(i)))
        np.testing.assert_allclose(back, whole.map_at_original(i), rtol=1e-5, atol=1e-7, equal_nan=True)


def test_real_photo_from_scikit_image():
    data = pytest.importorskip("skimage.data")
    coffee = data.coffee()  # 400 high × 600 wide
    from vexplain.demo.model import demo_adapter

    adapter = demo_adapter()
    exp = vx.explain(adapter, vx.prepare_images(coffee, adapter), method="gradcam")
    record = exp.options["preprocess"][0]
    assert record["original_size"] == [400, 600] and record["resized_size"] == [64, 96]
    assert record["crop_box"] == [100.0, 0.0, 500.0, 400.0]  # 16·600/96 = 100, 80·600/96 = 500
    back = exp.map_at_original(0)
    assert np.isfinite(back[:, 100:500]).all() and np.isnan(back[:, :100]).all() and np.isnan(back[:, 500:]).all()


@pytest.mark.parametrize("method", ["saliency", "input_x_gradient"])  # unsigned and signed maps
def test_original_and_model_agree_when_nothing_was_resized(method, tmp_path):
    image = photo(64, 64, 7)
    prepared = vx.prepare_images(image, {"input_size": [64, 64], "mean": [0.5] * 3, "std": [0.25] * 3})
    exp = vx.explain(MeanModel(), prepared, method=method, targets=0)
    np.testing.assert_allclose(exp.map_at_original(0), exp.maps[0], rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(exp.overlay([image], at="original")[0], exp.overlay(image)[0])
    model_files = exp.save(tmp_path / "m", "p", [image], colour_bar=True)
    original_files = exp.save(tmp_path / "o", "p", [image], colour_bar=True, at="original")
    assert model_files[0].read_bytes() == original_files[0].read_bytes()
