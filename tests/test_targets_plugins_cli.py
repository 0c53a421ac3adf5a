"""Target kinds from plugins (the ``register_targets`` hook) and ``--target`` on the command line."""
from __future__ import annotations

import types

import cv2
import numpy as np
import pytest
import torch

import vexplain as vx
from vexplain.cli.main import main
from vexplain.core.images import load_image, preprocess
from vexplain.core.registry import REGISTRY
from vexplain.targets import Box, Region, Target

from models import close, tiny_seg_net
from target_models import tiny_yolo

try:
    import test_plugins_support as support
except ImportError:  # tests/ imported as a package
    from tests import test_plugins_support as support


class CentrePixel(Target):
    """The class ``label``'s value at the output's centre pixel (N, K, H, W) → (N, 1)."""

    name = "centre_pixel"
    summary = "a class's value at the centre pixel"

    def __init__(self, label: int):
        self.label = label

    def score(self, output):
        return output[:, self.label, output.shape[2] // 2, output.shape[3] // 2][:, None]

    def describe(self):
        return f"centre_pixel {self.label}"

    @classmethod
    def from_text(cls, text, class_names=None, input_size=None):
        return cls(int(text))


def target_plugin(*kinds: type) -> types.SimpleNamespace:
    @vx.hookimpl
    def register_targets(register):
        for kind in kinds:
            register(kind)

    return types.SimpleNamespace(register_targets=register_targets)


def test_builtin_kinds_are_listed_with_their_plugin():
    listed = {k.name: k.plugin for k in vx.targets.kinds()}
    assert listed == {"box": "vexplain.plugins.target_kinds", "region": "vexplain.plugins.target_kinds", "similarity": "vexplain.plugins.target_kinds"}


def test_a_plugin_kind_is_built_by_name_and_explains():
    seg = tiny_seg_net(seed=0)
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with support.registered(target_plugin(CentrePixel), "centre_plugin"):
        assert {k.name: k.plugin for k in vx.targets.kinds()}["centre_pixel"] == "centre_plugin"
        target = vx.targets.parse("centre_pixel=2")
        exp = vx.explain(seg, x, method="saliency", targets=target)
        close(exp.scores[:, 0], seg(x)[:, 2, 4, 4].detach().numpy(), atol=1e-6)
        assert exp.options["targets"] == "centre_pixel 2"
    assert "centre_pixel" not in {k.name for k in vx.targets.kinds()}
    with pytest.raises(vx.InvalidTarget, match="unknown target kind 'centre_pixel'"):
        vx.targets.parse("centre_pixel=2")


def test_bad_and_duplicate_kinds_are_refused():
    class Copy(CentrePixel):
        name = "box"

    class Unnamed(CentrePixel):
        name = "Centre Pixel"

    class NoScore(Target):
        name = "no_score"

    before = {k.name: k.plugin for k in vx.targets.kinds()}
    for kind, message in [
        (Copy, "target kind 'box' is registered twice: by plugin 'vexplain.plugins.target_kinds' and by plugin 'bad'"),
        (Unnamed, "names are lowercase identifiers"),
        (NoScore, "does not implement score"),
        (int, "not a vexplain.targets.Target subclass"),
    ]:
        with pytest.raises(vx.PluginError, match=message):
            REGISTRY.register_plugin(target_plugin(kind), name="bad")
        assert {k.name: k.plugin for k in vx.targets.kinds()} == before  # left as it was


# ---------------------------------------------------------------------------------------------
# vexplain explain --target
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def detector_files(tmp_path):
    model = tiny_yolo(seed=0)
    weights = tmp_path / "yolo.pt"
    torch.save(model.state_dict(), weights)
    image = (np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8)
    path = tmp_path / "street.png"
    cv2.imwrite(str(path), image[:, :, ::-1])
    return model, weights, path


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_box_target_from_the_command_line(capsys, tmp_path, detector_files):
    model, weights, image = detector_files
    code, out, err = run_cli(capsys, "explain", "target_models:tiny_yolo", image, "--weights", weights, "--method", "occlusion",
                             "--target", "box=2,2,11,11", "--option", "window=4", "--option", "stride=4", "--out", tmp_path / "out")
    assert code == 0, err
    assert "street.png: occlusion for box [2.0, 2.0, 11.0, 11.0] any class iou 0.5 layout auto (score" in out
    raw = np.load(tmp_path / "out" / "street.occlusion.npy", allow_pickle=False)
    x = preprocess(load_image(image))[None]
    expected = vx.explain(model, x, method="occlusion", targets=Box([2, 2, 11, 11]), window=4, stride=4).maps[0]
    close(raw, expected, atol=1e-6)


def test_region_target_from_a_mask_file(capsys, tmp_path):
    seg = tiny_seg_net(seed=0)
    weights = tmp_path / "seg.pt"
    torch.save(seg.state_dict(), weights)
    image = (np.random.default_rng(1).random((16, 16, 3)) * 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "scene.png"), image)
    mask = np.zeros((16, 16), np.uint8)
    mask[4:12, 2:8] = 1  # drawn on the 16 x 16 image, the model input is 8 x 8
    cv2.imwrite(str(tmp_path / "mask.png"), mask)
    code, out, err = run_cli(capsys, "explain", "models:tiny_seg_net", tmp_path / "scene.png", "--weights", weights, "--method", "saliency",
                             "--target", f"region={tmp_path / 'mask.png'}:1", "--size", 8, 8, "--at", "model", "--out", tmp_path / "out")
    assert code == 0, err
    small = np.zeros((8, 8), bool)
    small[2:6, 1:4] = True  # nearest-neighbour halving
    x = preprocess(load_image(tmp_path / "scene.png"), (8, 8))[None]
    expected = vx.explain(seg, x, method="saliency", targets=Region(1, small)).maps[0]
    close(np.load(tmp_path / "out" / "scene.saliency.npy"), expected, atol=1e-6)
    assert "region mask of 12 px label 1" in out


def test_nothing_overlapping_is_printed_as_a_warning(capsys, tmp_path, detector_files):
    _, weights, image = detector_files
    code, out, err = run_cli(capsys, "explain", "target_models:tiny_yolo", image, "--weights", weights, "--method", "saliency",
                             "--target", "box=0,0,1,1:2", "--out", tmp_path / "out")
    assert code == 0 and "warning: street.png: box [0.0, 0.0, 1.0, 1.0] label 2" in err and "scored 0" in err


@pytest.mark.parametrize(
    "target, message",
    [
        ("box=2,2,11", "box= takes x0,y0,x1,y1[:label]"),
        ("box=2,2,11,11:7", "label 7 is out of range for an output with 3 classes"),
        ("box=11,2,2,11", "x1 > x0"),
        ("ellipse=1", "unknown target kind 'ellipse'"),
        ("region=nowhere.png", "image not found"),
        ("giraffe", "class index or a class name, or KIND=VALUE"),
    ],
)
def test_bad_targets_exit_2_in_one_line(capsys, tmp_path, detector_files, target, message):
    _, weights, image = detector_files
    code, out, err = run_cli(capsys, "explain", "target_models:tiny_yolo", image, "--weights", weights, "--method", "saliency",
                             "--target", target, "--out", tmp_path / "out")
    assert code == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
