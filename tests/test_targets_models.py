"""Box, Region and Similarity targets on tiny models, through ``vx.explain`` and ``vx.evaluate``.

Every registered PyTorch method is checked against the same model with the target folded in
(``ScoreAsOutput``: its output is the target's score, explained as class 0), on a YOLO-style
detector in its three output layouts and on a small FCN segmenter; per-input targets are checked
against explaining each input alone, at several batch sizes.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import vexplain as vx
from vexplain.core.adapter import ATTENTION
from vexplain.targets import Box, Region, Similarity

from models import close, images, quick_options, seeded_cnn, tiny_seg_net
from target_models import ScoreAsOutput, tiny_yolo

FAST = {**quick_options(), "lime": {"alpha": 0.0}, "occlusion": {"window": 4, "stride": 4}, "smoothgrad": {"samples": 3}, "integrated_gradients": {"steps": 5}, "rise": {"masks": 64}}
TORCH_METHODS = [m.name for m in vx.methods() if "torch" in m.backends and ATTENTION not in m.requires]  # attention methods: test_vit_rollout.py
SEG_MASK = np.zeros((8, 8), bool)
SEG_MASK[2:6, 1:5] = True


def detector_case(layout: str):
    model = tiny_yolo(seed=0, layout=layout)
    x = images(2, size=16, seed=1)
    # a reference box near anchor (1, 1) (centre 6, 6), loose threshold so the clean inputs match
    return model, x, Box([2.0, 2.0, 11.0, 11.0], label=None, iou=0.05), "features.3"


def segmenter_case():
    return tiny_seg_net(seed=0), images(2, size=8, seed=1), Region(1, SEG_MASK), "conv2"


CASES = {
    "yolov8": lambda: detector_case("yolov8"),
    "yolov5": lambda: detector_case("yolov5"),
    "torchvision": lambda: detector_case("torchvision"),
    "segmenter": segmenter_case,
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("method", TORCH_METHODS)
def test_every_method_equals_the_model_with_the_target_folded_in(case, method):
    model, x, target, layer = CASES[case]()
    info = {m.name: m for m in vx.methods()}[method]
    options = dict(FAST.get(method, {}))
    layered = "layer" in info.options
    if info.class_targets_only:  # a classifier's weight row, or a class compared with classes: a box or region has neither
        with pytest.raises(vx.InvalidTarget, match="class indices"):
            vx.explain(model, x, method=method, targets=target, layer=layer)
        return
    exp = vx.explain(model, x, method=method, targets=target, **options, **({"layer": layer} if layered else {}))
    folded = vx.explain(ScoreAsOutput(model, target), x, method=method, targets=0, **options, **({"layer": f"inner.{layer}"} if layered else {}))
    assert exp.scores.shape == (2, 1) and exp.targets.tolist() == [0, 0]
    assert exp.options["targets"] == target.describe() and exp.warnings == [w.replace("inner.", "") for w in folded.warnings]
    close(exp.scores, folded.scores, atol=1e-6)
    close(exp.maps, folded.maps, atol=relative(folded.maps))
    assert np.abs(exp.maps).max() > 0


def relative(expected: np.ndarray, tolerance: float = 1e-4) -> float:
    """An absolute tolerance of ``tolerance`` times the largest expected magnitude (tiny maps stay strict)."""
    return tolerance * float(np.abs(expected).max()) + 1e-12


@pytest.mark.parametrize("method", ["occlusion", "rise", "scorecam", "ablationcam", "saliency", "gradcam"])
def test_one_box_per_input_is_batch_invariant(method):
    """16 images, one box each: explained together at adapter batch sizes 1, 2, 4 and 16 (and the
    method's own batch size) the maps equal those of each image explained alone with its box."""
    model = tiny_yolo(seed=0)
    x = images(16, size=16, seed=4)
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 8, size=(16, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(4, 8, size=(16, 2))], axis=1)
    outputs = model(torch.from_numpy(x))
    # per input, a class that has a box there, tried from i mod 3 (Ablation-CAM divides by the score: a 0 is undefined)
    labels = [next(k for k in ((i + j) % 3 for j in range(3)) if Box(boxes[i], k, iou=0.05).score(outputs[i : i + 1]).item() > 0) for i in range(16)]
    assert len(set(labels)) > 1
    options = {**FAST.get(method, {}), **({"layer": "features.3"} if method in ("scorecam", "ablationcam", "gradcam") else {})}
    alone = np.concatenate([
        vx.explain(model, x[i : i + 1], method=method, targets=Box(boxes[i], labels[i], iou=0.05), **options).maps for i in range(16)
    ])
    for batch in (1, 2, 4, 16):
        extra = {"batch_size": batch} if "batch_size" in {m.name: m for m in vx.methods()}[method].options else {}
        together = vx.explain(vx.adapt(model, batch_size=batch), x, method=method, targets=Box(boxes, labels, iou=0.05), **options, **extra)
        assert together.scores.shape == (16, 16) and together.targets.tolist() == list(range(16))
        close(together.maps, alone, atol=relative(alone))
    listed = vx.explain(model, x, method=method, targets=[Box(boxes[i], labels[i], iou=0.05) for i in range(16)], **options)
    close(listed.maps, alone, atol=relative(alone))
    assert np.abs(alone).max() > 0


def test_region_per_input_and_top_class():
    seg = tiny_seg_net(seed=0)
    x = images(3, size=8, seed=2)
    masks = np.zeros((3, 8, 8), bool)
    masks[0, :4], masks[1, 4:], masks[2, :, :3] = True, True, True
    together = vx.explain(seg, x, method="occlusion", targets=Region([0, 1, 2], masks), window=2, stride=2)
    for i in range(3):
        alone = vx.explain(seg, x[i : i + 1], method="occlusion", targets=Region(i, masks[i]), window=2, stride=2)
        close(together.maps[i], alone.maps[0], atol=relative(alone.maps))
    top = vx.explain(seg, x, method="saliency", targets=Region(None, SEG_MASK))
    sums = (seg(torch.from_numpy(x)) * torch.from_numpy(SEG_MASK)).sum(dim=(2, 3)).detach().numpy()
    assert top.scores.shape == (3, 3)
    close(top.scores, sums, atol=1e-5)
    assert top.targets.tolist() == sums.argmax(axis=1).tolist()
    for i, k in enumerate(top.targets):
        close(top.maps[i], vx.explain(seg, x[i : i + 1], method="saliency", targets=Region(int(k), SEG_MASK)).maps[0], atol=1e-6)


def test_similarity_of_an_embedding():
    model = seeded_cnn(seed=0)  # its 5 outputs read as an embedding
    x = torch.from_numpy(images(2, size=8, seed=3))
    vector = model(x[:1]).detach()[0]
    exp = vx.explain(model, x, method="saliency", targets=Similarity(vector))
    close(exp.scores[0], [1.0], atol=1e-6)  # an input is most similar to its own embedding
    expected = torch.nn.functional.cosine_similarity(model(x[1:]), vector[None]).item()
    close(exp.scores[1], [expected], atol=1e-6)


def test_nothing_overlapping_is_said_in_warnings():
    model = tiny_yolo(seed=0)
    x = images(2, size=16, seed=1)
    exp = vx.explain(model, x, method="occlusion", targets=Box([0, 0, 1, 1], label=2, iou=0.9), window=4, stride=4)
    close(exp.scores, [[0.0], [0.0]])
    line, *others = exp.warnings
    assert "every input scored 0" in line and "IoU >= 0.9" in line
    assert len(others) == 1 and "all zero" in others[0]  # the result check's line; no saturation line for a box score
    assert np.all(exp.maps == 0)


def test_target_objects_on_a_classifier_output_fail_in_one_line():
    with pytest.raises(vx.InvalidTarget, match=r"Box cannot tell the detector layout of an output \(2, 5\)") as caught:
        vx.explain(seeded_cnn(), images(2, size=8), method="saliency", targets=Box([0, 0, 4, 4]))
    assert "\n" not in str(caught.value)


# ---------------------------------------------------------------------------------------------
# vx.evaluate with targets
# ---------------------------------------------------------------------------------------------


def test_deletion_curves_use_the_box_score_not_a_softmax():
    model = tiny_yolo(seed=0)
    x = images(2, size=16, seed=1)
    target = Box([2.0, 2.0, 11.0, 11.0], iou=0.05)
    result = vx.evaluate(model, x, "saliency", metric="deletion", targets=target, steps=4)
    clean = target.score(model(torch.from_numpy(x))).detach().numpy()[:, 0]
    deleted = target.score(model(torch.zeros(2, 3, 16, 16))).detach().numpy()[:, 0]  # substrate zeros: all deleted
    close(result.curves["deletion"][:, 0], clean, atol=1e-6)
    close(result.curves["deletion"][:, -1], deleted, atol=1e-6)
    assert result.options["targets"] == target.describe()
    insertion = vx.evaluate(model, x, "saliency", metric="insertion", targets=target, steps=4)
    close(insertion.curves["insertion"][:, -1], clean, atol=1e-6)


def test_road_takes_the_region_score():
    seg = tiny_seg_net(seed=0)
    x = images(2, size=8, seed=1)
    target = Region(1, SEG_MASK)
    result = vx.evaluate(seg, x, "saliency", metric="road", targets=target, fractions=(0.5,))
    clean = target.score(seg(torch.from_numpy(x))).detach().numpy()
    assert result.curves["road_morf"].shape == (2, 1)
    assert np.abs(result.curves["road_morf"] - clean).max() < np.abs(clean).max() * 10  # a logit sum, not a probability
    assert (np.abs(result.curves["road_morf"]) > 1).any() or (result.curves["road_morf"] < 0).any()


def test_pointing_game_takes_boxes_from_box_targets():
    model = tiny_yolo(seed=0)
    x = images(3, size=16, seed=2)
    boxes = np.array([[0, 0, 8, 8], [8, 8, 16, 16], [4, 0, 12, 16]], dtype=float)
    exp = vx.explain(model, x, method="saliency", targets=Box(boxes, 0, iou=0.0))
    from_targets = vx.evaluate(model, x, exp, metric="pointing_game", targets=Box(boxes, 0, iou=0.0))
    given = vx.evaluate(seeded_cnn(), x, exp.maps, metric="pointing_game", masks=boxes)
    close(from_targets.values["hit"], given.values["hit"])
    close(from_targets.values["baseline_hit"], [0.0, 1.0, 1.0])  # centre (8, 8) lies in boxes 1 and 2 only


def test_an_explanation_is_evaluated_with_its_own_target():
    model = tiny_yolo(seed=0)
    x = images(2, size=16, seed=1)
    target = Box([2.0, 2.0, 11.0, 11.0], iou=0.05)
    exp = vx.explain(model, x, method="saliency", targets=target)
    with pytest.raises(vx.InvalidTarget, match="pass the same targets= to evaluate"):
        vx.evaluate(model, x, exp, metric="deletion")
    with pytest.raises(vx.InvalidTarget, match="but evaluate was given"):
        vx.evaluate(model, x, exp, metric="deletion", targets=Box([0.0, 0.0, 9.0, 9.0]))
    same = vx.evaluate(model, x, exp, metric="deletion", targets=target, steps=2)
    close(same.curves["deletion"][:, 0], exp.scores[:, 0], atol=1e-6)
