"""Deletion and insertion: perfect and adversarial maps, agreement with an unbatched reference,
batch-size and engine invariance, options and errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import vexplain as vx
from metric_fixtures import RegionModel, bright_region_images, reference_pixel_curve, region_mask
from models import images, seeded_cnn


@pytest.fixture(scope="module")
def region():
    return RegionModel().eval(), bright_region_images(3)


def maps_of(kind: str, n: int) -> np.ndarray:
    perfect = region_mask()
    if kind == "perfect":
        return np.repeat(perfect[None], n, axis=0)
    if kind == "adversarial":
        return np.repeat(1.0 - perfect[None], n, axis=0)
    return np.random.default_rng(5).random((n, *perfect.shape)).astype(np.float32)


@pytest.mark.parametrize("substrate", ["zeros", "mean", "blur"])
def test_the_map_marking_the_region_wins(region, substrate):
    model, x = region
    auc = {}
    for metric in ("deletion", "insertion"):
        for kind in ("perfect", "random", "adversarial"):
            ev = vx.evaluate(model, x, maps_of(kind, len(x)), metric=metric, targets=0, steps=32, substrate=substrate)
            auc[metric, kind] = ev.score
    # deletion: lower is better; insertion: higher is better — image by image
    assert (auc["deletion", "perfect"] < auc["deletion", "random"]).all()
    assert (auc["deletion", "random"] < auc["deletion", "adversarial"]).all()
    assert (auc["insertion", "perfect"] > auc["insertion", "random"]).all()
    assert (auc["insertion", "random"] > auc["insertion", "adversarial"]).all()


def test_perfect_deletion_reaches_the_floor_once_the_region_is_gone(region):
    model, x = region
    steps = 64  # 4 pixels per step: the 24 region pixels are gone after step 6
    ev = vx.evaluate(model, x, maps_of("perfect", len(x)), metric="deletion", targets=0, steps=steps)
    curve = ev.curves["deletion"]
    assert curve.shape == (len(x), steps + 1) and ev.curve_x["deletion"][0] == 0.0 and ev.curve_x["deletion"][-1] == 1.0
    np.testing.assert_allclose(curve[:, 6:], 1 / (1 + np.exp(4.0)), atol=1e-6)  # s = -2 with the region at 0
    assert (np.diff(curve[:, :7], axis=1) < 0).all()


@pytest.mark.parametrize("metric, kind", [("deletion", "zeros"), ("deletion", "blur"), ("insertion", "blur"), ("insertion", "mean")])
def test_matches_an_unbatched_reference(metric, kind):
    model = seeded_cnn()
    x = images(3, size=16, seed=4)
    saliency = np.random.default_rng(2).standard_normal((3, 16, 16)).astype(np.float32)
    saliency[:, :4, :4] = 0.0  # ties: order must be row-major among them
    ev = vx.evaluate(model, x, saliency, metric=metric, targets=[0, 3, 1], steps=20, substrate=kind, blur_sigma=1.5)
    for i, target in enumerate([0, 3, 1]):
        curve, xs, auc = reference_pixel_curve(model, x[i], saliency[i], target, 20, kind, metric == "insertion", sigma=1.5)
        np.testing.assert_allclose(ev.curves[metric][i], curve, atol=2e-6)
        np.testing.assert_allclose(ev.curve_x[metric], xs)
        np.testing.assert_allclose(ev.score[i], auc, atol=2e-6)


@pytest.mark.parametrize("metric", ["deletion", "insertion"])
def test_batch_size_and_engine_change_nothing(metric):
    model = seeded_cnn()
    x = images(2, size=16, seed=6)
    saliency = np.random.default_rng(7).random((2, 16, 16)).astype(np.float32)
    runs = [
        vx.evaluate(model, x, saliency, metric=metric, steps=30, batch_size=b, engine=e)
        for b, e in ((1, "auto"), (7, "auto"), (64, "auto"), (13, "torch"))
    ]
    assert runs[0].options["engine"] == "onnx" and runs[-1].options["engine"] == "torch"
    for other in runs[1:]:
        np.testing.assert_allclose(other.curves[metric], runs[0].curves[metric], atol=1e-6)
    assert [r.options["batch_size"] for r in runs] == [1, 7, 64, 13]


def test_method_name_explanation_and_maps_give_the_same_numbers():
    model = seeded_cnn()
    x = images(2, size=16, seed=8)
    exp = vx.explain(model, x, method="gradcam", targets=[1, 2])
    by_name = vx.evaluate(model, x, "gradcam", metric="deletion", targets=[1, 2], steps=10)
    by_exp = vx.evaluate(model, x, exp, metric="deletion", steps=10)
    by_maps = vx.evaluate(model, x, exp.maps, metric="deletion", targets=[1, 2], steps=10)
    for ev in (by_exp, by_maps):
        np.testing.assert_array_equal(ev.score, by_name.score)
        np.testing.assert_array_equal(ev.targets, [1, 2])
    assert by_name.method == by_exp.method == "gradcam" and by_maps.method is None
    assert by_name.options["steps"] == 10 and by_name.options["substrate"] == "zeros"
    assert by_name.higher_is_better is False and by_name.headline == "auc"


def test_maps_default_to_the_top_class():
    model = seeded_cnn()
    x = images(3, size=16, seed=9)
    ev = vx.evaluate(model, x, np.ones((3, 16, 16), np.float32), metric="insertion", steps=4)
    top = model(torch.from_numpy(x)).argmax(1).numpy()
    np.testing.assert_array_equal(ev.targets, top)


BAD = {
    "unknown metric": (dict(metric="delition"), vx.UnknownMetric, "did you mean: deletion"),
    "unknown option": (dict(metric="deletion", stpes=3), vx.InvalidOption, "metric 'deletion' has no option 'stpes'"),
    "bad substrate": (dict(metric="deletion", substrate="noise"), vx.InvalidOption, "must be one of 'zeros', 'mean', 'blur'"),
    "zero steps": (dict(metric="insertion", steps=0), vx.InvalidOption, "must be an int >= 1"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_calls_are_typed_one_line_errors(case):
    kwargs, error, text = BAD[case]
    with pytest.raises(error, match=text) as caught:
        vx.evaluate(seeded_cnn(), images(1, size=16), np.ones((1, 16, 16), np.float32), **kwargs)
    assert "\n" not in str(caught.value)


def test_maps_of_the_wrong_shape_are_refused():
    with pytest.raises(vx.InvalidInput, match=r"maps must be numbers of shape \(N, H, W\) = \(2, 16, 16\)"):
        vx.evaluate(seeded_cnn(), images(2, size=16), np.ones((2, 8, 8), np.float32), metric="deletion")
    with pytest.raises(vx.InvalidInput, match="NaN"):
        vx.evaluate(seeded_cnn(), images(1, size=16), np.full((1, 16, 16), np.nan, np.float32), metric="deletion")


def test_an_explanation_of_an_unregistered_method_can_be_scored():
    model = seeded_cnn()
    x = images(1, size=16)
    made = vx.Explanation(maps=np.ones((1, 16, 16), np.float32), targets=np.array([2]), scores=np.zeros((1, 5), np.float32), method="my_own")
    ev = vx.evaluate(model, x, made, metric="deletion", steps=4)
    assert ev.method == "my_own" and ev.targets.tolist() == [2]
