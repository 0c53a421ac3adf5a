"""ROAD with noisy linear imputation: the imputation itself, a reference run, batching, ranking."""
from __future__ import annotations

import numpy as np
import pytest

import vexplain as vx
from metric_fixtures import RegionModel, bright_region_images, reference_linear_impute, reference_road, region_mask
from models import images, seeded_cnn
from vexplain.core.imputation import linear_impute, noisy_linear_impute


def test_imputation_reproduces_a_plane_inside_the_image():
    rows, cols = np.mgrid[0:10, 0:12]
    plane = np.stack([0.5 * rows - 0.25 * cols + 1.0, 2.0 * cols])  # (2, 10, 12)
    remove = np.zeros((10, 12), bool)
    remove[3:7, 2:9] = True  # a block with kept pixels all around
    remove[1, 10] = True
    np.testing.assert_allclose(linear_impute(plane, remove), plane, atol=1e-10)


def test_imputation_matches_a_dense_reference_and_keeps_other_pixels():
    rng = np.random.default_rng(0)
    image = rng.standard_normal((3, 9, 7))
    remove = rng.random((9, 7)) > 0.4
    remove[0, :] = True  # border pixels have fewer neighbours
    out = linear_impute(image, remove)
    np.testing.assert_allclose(out, reference_linear_impute(image, remove), atol=1e-10)
    np.testing.assert_array_equal(out[:, ~remove], image[:, ~remove])


def test_noise_is_seeded_and_only_on_imputed_pixels():
    rng_image = np.random.default_rng(1)
    image = rng_image.standard_normal((3, 32, 32))
    remove = rng_image.random((32, 32)) > 0.5
    clean = linear_impute(image, remove)
    noisy = noisy_linear_impute(image, remove, 0.5, np.random.default_rng(7))
    again = noisy_linear_impute(image, remove, 0.5, np.random.default_rng(7))
    np.testing.assert_array_equal(noisy, again)
    np.testing.assert_array_equal(noisy[:, ~remove], image[:, ~remove])
    assert np.std(noisy[:, remove] - clean[:, remove]) == pytest.approx(0.5, rel=0.1)


def test_matches_an_unbatched_reference_without_noise():
    model = seeded_cnn()
    x = images(2, size=8, seed=2)
    saliency = np.random.default_rng(4).standard_normal((2, 8, 8)).astype(np.float32)
    fractions = (0.2, 0.5, 0.9)
    ev = vx.evaluate(model, x, saliency, metric="road", targets=[2, 0], fractions=fractions, noise=0.0)
    for i, target in enumerate([2, 0]):
        morf, lerf = reference_road(model, x[i], saliency[i], target, fractions)
        np.testing.assert_allclose(ev.curves["road_morf"][i], morf, atol=2e-6)
        np.testing.assert_allclose(ev.curves["road_lerf"][i], lerf, atol=2e-6)
        np.testing.assert_allclose(ev.values["gap"][i], lerf.mean() - morf.mean(), atol=2e-6)
    assert ev.curve_x["road_morf"] == list(fractions)


def test_batch_size_changes_nothing_even_with_noise():
    model = seeded_cnn()
    x = images(2, size=12, seed=5)
    saliency = np.random.default_rng(6).random((2, 12, 12)).astype(np.float32)
    runs = [vx.evaluate(model, x, saliency, metric="road", batch_size=b) for b in (1, 5, 64)]
    for other in runs[1:]:
        np.testing.assert_allclose(other.curves["road_morf"], runs[0].curves["road_morf"], atol=1e-6)
        np.testing.assert_allclose(other.curves["road_lerf"], runs[0].curves["road_lerf"], atol=1e-6)
    assert runs[0].options["noise"] == 0.01 and len(runs[0].options["fractions"]) == 9


def test_the_map_marking_the_region_has_the_largest_gap():
    model, x = RegionModel().eval(), bright_region_images(2)
    perfect = np.repeat(region_mask()[None], 2, axis=0)
    noise = np.random.default_rng(3).random((2, 16, 16)).astype(np.float32)
    good = vx.evaluate(model, x, perfect, metric="road", targets=0)
    bad = vx.evaluate(model, x, noise, metric="road", targets=0)
    assert (good.values["gap"] > bad.values["gap"]).all()
    assert (good.values["morf"] < bad.values["morf"]).all()
    assert good.higher_is_better and good.headline == "gap"


@pytest.mark.parametrize("fractions", [(), (0.0, 0.5), (0.5, 1.0), "0.5"])
def test_fractions_must_lie_strictly_between_0_and_1(fractions):
    with pytest.raises(vx.InvalidOption, match="strictly between 0 and 1"):
        vx.evaluate(seeded_cnn(), images(1, size=8), np.ones((1, 8, 8), np.float32), metric="road", fractions=fractions)
