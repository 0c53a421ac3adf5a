"""Bad metric options, bad plugin results and edge inputs give typed one-line errors, never a
traceback or a plausible number."""
from __future__ import annotations

import json
import types

import cv2
import numpy as np
import pytest
from torch import nn

import vexplain as vx
from vexplain.core.registry import REGISTRY
from vexplain.core.similarity import spearman

from metric_fixtures import RegionModel, bright_region_images, region_mask


def test_metric_options_must_be_finite_and_in_range():
    x = bright_region_images(1)
    for metric, option in [("deletion", {"blur_sigma": 0.0}), ("insertion", {"blur_sigma": float("inf")}),
                           ("road", {"noise": -1.0}), ("deletion", {"memory_mb": float("nan")})]:
        with pytest.raises(vx.InvalidOption, match=next(iter(option))) as caught:
            vx.evaluate(RegionModel(), x, region_mask()[None], metric=metric, **option)
        assert "\n" not in str(caught.value)


def test_road_refuses_a_fraction_that_removes_every_pixel():
    with pytest.raises(vx.InvalidOption, match="remove some pixels and keep some"):
        vx.evaluate(RegionModel(), bright_region_images(1), region_mask()[None], metric="road", fractions=(0.5, 0.999))


def test_an_explanations_targets_are_range_checked():
    x = bright_region_images(2)
    exp = vx.explain(RegionModel(), x, method="occlusion", window=4)
    exp.targets = np.array([0, 5])
    with pytest.raises(vx.InvalidTarget):
        vx.evaluate(RegionModel(), x, exp, metric="deletion", steps=4)


class ZeroD(vx.Metric):
    name = "test_zero_d"
    summary = "returns one number for the whole batch"
    paper = "none"
    headline = "value"

    def evaluate(self, case, options):
        return vx.MetricResult(values={"value": np.float64(1.0)})


def test_a_plugin_returning_the_wrong_shape_is_a_plugin_error():
    @vx.hookimpl
    def register_metrics(register):
        register(ZeroD)

    name = REGISTRY.register_plugin(types.SimpleNamespace(register_metrics=register_metrics), name="zero_d_metrics")
    try:
        with pytest.raises(vx.PluginError, match="one value per image"):
            vx.evaluate(RegionModel(), bright_region_images(2), np.ones((2, 16, 16)), metric="test_zero_d")
    finally:
        REGISTRY.unregister_plugin(name)


def test_a_model_that_outputs_probabilities_is_not_softmaxed_twice():
    x = bright_region_images(2)
    maps = np.broadcast_to(region_mask(), (2, 16, 16)).copy()
    logits = vx.evaluate(RegionModel(), x, maps, metric="deletion", steps=8)
    probabilities = vx.evaluate(nn.Sequential(RegionModel(), nn.Softmax(dim=1)), x, maps, metric="deletion", steps=8)
    np.testing.assert_allclose(probabilities.values["auc"], logits.values["auc"], atol=1e-6)


def test_spearman_of_a_constant_map_is_undefined_not_zero():
    assert np.isnan(spearman(np.ones((4, 4)), np.arange(16.0).reshape(4, 4)))


def test_a_folder_with_some_labels_missing_is_refused(capsys, tmp_path):
    from vexplain.cli.main import main
    from vexplain.demo.model import ASSETS

    for name in ("a.png", "b.png"):
        cv2.imwrite(str(tmp_path / name), np.zeros((64, 64, 3), np.uint8))
    (tmp_path / "boxes.json").write_text(json.dumps({"a.png": {"box": [0, 0, 8, 8], "label": 1}, "b.png": {"box": [0, 0, 8, 8]}}))
    code = main(["evaluate", "--model", str(ASSETS / "demo_cnn.onnx"), "--data", str(tmp_path), "--methods", "cam", "--metrics", "pointing_game", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "b.png" in err and "label every image or none" in err and len(err.strip().splitlines()) == 1
