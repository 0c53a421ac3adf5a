"""Box, Region and Similarity scores checked by hand on tiny tensors, in every output layout.

Three predicted boxes, xyxy: A0 = (3, 3, 7, 7), A1 = (4, 3, 8, 7), A2 = (18, 18, 22, 22). Against
the reference R = (3, 3, 7, 7): IoU(A0) = 1; IoU(A1) = (3 · 4) / (16 + 16 − 12) = 0.6; IoU(A2) = 0.
Class scores (2 classes): A0 (0.9, 0.1) → class 0 at 0.9; A1 (0.2, 0.7) → class 1 at 0.7;
A2 (0.3, 0.6) → class 1 at 0.6. Five more anchors far away at (100, 100) score 0 and overlap
nothing (so the anchor axis is the longer one and the layout can be inferred).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import vexplain as vx
from vexplain.targets import Box, Region, Similarity

from models import close

REF = [3.0, 3.0, 7.0, 7.0]
FAR = 5
CXCYWH = torch.tensor([[5.0, 5.0, 4.0, 4.0], [6.0, 5.0, 4.0, 4.0], [20.0, 20.0, 4.0, 4.0]] + [[100.0, 100.0, 4.0, 4.0]] * FAR, dtype=torch.float64)
CLASSES = torch.tensor([[0.9, 0.1], [0.2, 0.7], [0.3, 0.6]] + [[0.0, 0.0]] * FAR, dtype=torch.float64)


def yolov8() -> torch.Tensor:
    return torch.cat([CXCYWH, CLASSES], dim=1).T[None].clone()  # (1, 4 + 2, 8)


def yolov5(objectness=(0.5, 1.0, 1.0) + (1.0,) * FAR) -> torch.Tensor:
    # class probabilities as given; objectness scales them: A0 scores 0.5 · 0.9 = 0.45
    return torch.cat([CXCYWH, torch.tensor(objectness, dtype=torch.float64)[:, None], CLASSES], dim=1)[None].clone()  # (1, 8, 5 + 2)


def torchvision_style() -> list[dict]:
    xyxy = torch.cat([CXCYWH[:, :2] - CXCYWH[:, 2:] / 2, CXCYWH[:, :2] + CXCYWH[:, 2:] / 2], dim=1)
    top, labels = CLASSES.max(dim=1)
    return [{"boxes": xyxy, "labels": labels, "scores": top}]


@pytest.mark.parametrize(
    "box, expected",
    [
        (Box(REF, label=0), 0.9),  # A0: IoU 1
        (Box(REF, label=1), 0.7),  # A1: IoU 0.6 >= 0.5
        (Box(REF, label=1, iou=0.6), 0.7),  # the threshold is inclusive
        (Box(REF, label=1, iou=0.61), 0.0),  # nothing of class 1 overlaps enough
        (Box(REF), 0.9),  # any class: the best overlap, A0
        (Box(REF, label=1, add_iou=True), 0.7 + 0.6),
        (Box(REF, label=1, min_score=0.75), 0.0),
        (Box([17, 17, 23, 23], label=1), 0.0),  # A2: IoU 16 / 36 = 0.444 < 0.5
        (Box([17, 17, 23, 23], label=1, iou=0.4), 0.6),
    ],
)
@pytest.mark.parametrize("layout", ["yolov8", "torchvision"])
def test_box_scores_by_hand(box, expected, layout):
    output = yolov8() if layout == "yolov8" else torchvision_style()
    close(box.score(output), [[expected]], atol=1e-12)


def test_yolov5_scores_are_objectness_times_class_probability():
    output = yolov5()
    close(Box(REF, label=0).score(output), [[0.45]], atol=1e-12)
    close(Box(REF, label=1).score(output), [[0.7]], atol=1e-12)
    close(Box(REF).score(output), [[0.45]], atol=1e-12)  # any class: still A0, the best overlap
    # the anchor's class is its most probable one, whatever the objectness: A0 stays class 0
    close(Box(REF, label=0).score(yolov5((0.1, 1.0, 1.0) + (1.0,) * FAR)), [[0.09]], atol=1e-12)


def test_transposed_yolov8_rows():
    rows = yolov8().transpose(1, 2)  # (1, 8, 6): would be inferred as yolov5, so it must be named
    close(Box(REF, label=1, layout="yolov8_rows").score(rows), [[0.7]], atol=1e-12)


def test_best_overlap_of_the_class_not_of_any_class():
    """pytorch-grad-cam takes the best-IoU box of any class and scores 0 when its label differs;
    here the box of class 1 with IoU 0.6 counts although a class-0 box overlaps better."""
    close(Box(REF, label=1).score(yolov8()), [[0.7]], atol=1e-12)


def test_layout_inference_and_ambiguity():
    from vexplain.core.boxes import infer_layout

    assert infer_layout(torch.zeros(2, 7, 16)) == "yolov8"
    assert infer_layout(torch.zeros(2, 16, 8)) == "yolov5"
    assert infer_layout(torchvision_style()) == "torchvision"
    for shape in ((1, 9, 9), (1, 4, 100), (1, 100, 5), (1, 20)):
        with pytest.raises(vx.InvalidTarget, match="give layout= one of yolov8, yolov8_rows, yolov5, torchvision"):
            Box(REF).score(torch.zeros(shape))
    with pytest.raises(vx.InvalidTarget, match="layout must be one of"):
        Box(REF, layout="ssd")


def test_box_gradient_reaches_the_chosen_score_only():
    output = yolov8().requires_grad_(True)
    (grad,) = torch.autograd.grad(Box(REF, label=1).score(output).sum(), output)
    expected = torch.zeros_like(output)
    expected[0, 4 + 1, 1] = 1.0  # class 1's score of anchor A1
    close(grad, expected)
    (grad,) = torch.autograd.grad(Box(REF, label=1, add_iou=True).score(output).sum(), output)
    assert grad[0, :4, 1].abs().sum() > 0  # with add_iou the box coordinates take part too
    assert grad[0, :, [0, 2, 3]].abs().sum() == 0


def test_one_box_per_input_and_list_of_boxes():
    output = torch.cat([yolov8(), yolov8()])  # two images, same predictions
    per_input = Box([REF, [4, 3, 8, 7]], label=[0, 1])
    close(per_input.score(output), [[0.9, 0.7], [0.9, 0.7]], atol=1e-12)  # column i: input i's box
    request = vx.core.targets.TargetRequest([Box(REF, label=0), Box([4, 3, 8, 7], label=1)], 2)
    assert isinstance(request.score_function, Box) and request.score_function.count == 2  # stacked, vectorised
    close(request.score_function.score(output), per_input.score(output), atol=0)
    assert request.per_input.tolist() == [0, 1]
    with pytest.raises(vx.InvalidTarget, match="gives 2 targets but there are 3 inputs"):
        vx.core.targets.TargetRequest(per_input, 3)
    with pytest.raises(vx.InvalidTarget, match="2 entries but there are 3 inputs"):
        vx.core.targets.TargetRequest([Box(REF), Box(REF)], 3)


def test_mixed_kinds_per_input_are_scored_in_turn():
    region = Region(0, np.ones((2, 2), bool))
    seg = torch.arange(16, dtype=torch.float64).reshape(2, 2, 2, 2)
    request = vx.core.targets.TargetRequest([region, Region(1, np.eye(2, dtype=bool)), ], 2)
    assert isinstance(request.score_function, Region)  # same kind: stacked
    close(request.score_function.score(seg), [[0 + 1 + 2 + 3, 4 + 7], [8 + 9 + 10 + 11, 12 + 15]])
    mixed = vx.core.targets.PerInput([region, vx.targets.FunctionTarget(lambda out: out[:, 1, 0, 0])])
    close(mixed.score(seg), [[6, 4], [38, 12]])


def test_labels_are_range_checked():
    with pytest.raises(vx.InvalidTarget, match="label 2 is out of range for an output with 2 classes"):
        Box(REF, label=2).score(yolov8())
    with pytest.raises(vx.InvalidTarget, match="x1 > x0"):
        Box([5, 5, 1, 9])
    with pytest.raises(vx.InvalidTarget, match="label must be an int"):
        Box(REF, label="cat")


def test_several_outputs_are_never_guessed():
    named = {"boxes": yolov8(), "features": torch.zeros(1, 8, 4, 4)}
    with pytest.raises(vx.InvalidTarget, match=r"several outputs \('boxes' \(1, 6, 8\), 'features' \(1, 8, 4, 4\)\); choose one with output="):
        Box(REF, label=0).score(named)
    close(Box(REF, label=0, output="boxes").score(named), [[0.9]], atol=1e-12)
    close(Box(REF, label=0, output=0).score((yolov8(), torch.zeros(1))), [[0.9]], atol=1e-12)
    close(Box(REF, label=0).score({"only": yolov8()}), [[0.9]], atol=1e-12)
    with pytest.raises(vx.InvalidTarget, match="no entry 'logits'; it has 'boxes', 'features'"):
        Box(REF, output="logits").score(named)
    with pytest.raises(vx.InvalidTarget, match="returned one tensor"):
        Box(REF, output="boxes").score(yolov8())


def test_empty_torchvision_detections_score_zero():
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "scores": torch.zeros(0)}]
    close(Box(REF, label=0).score(empty + torchvision_style()), [[0.0], [0.9]], atol=1e-7)
    with pytest.raises(vx.InvalidTarget, match="image 0 lacks scores"):
        Box(REF).score([{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0)}])


def test_region_by_hand():
    y = torch.arange(2 * 3 * 2 * 2, dtype=torch.float64).reshape(2, 3, 2, 2)  # y[n, k] = 12n + 4k + [0 1; 2 3]
    mask = np.array([[True, False], [True, True]])
    close(Region(1, mask).score(y), [[4 + 6 + 7], [16 + 18 + 19]])
    close(Region(None, mask).score(y), [[0 + 2 + 3, 4 + 6 + 7, 8 + 10 + 11], [12 + 14 + 15, 16 + 18 + 19, 20 + 22 + 23]])
    request = vx.core.targets.TargetRequest(Region(None, mask), 2)
    assert request.per_input is None  # each input's top class on the unperturbed output
    close(request.select(Region(None, mask).score(y)), [2, 2])
    per_input = Region([0, 2], np.stack([mask, ~mask]))
    close(per_input.score(y), [[0 + 2 + 3, 9], [12 + 14 + 15, 21]])
    with pytest.raises(vx.InvalidTarget, match=r"the mask is \(3, 3\) but the output's pixels are \(2, 2\)"):
        Region(1, np.ones((3, 3))).score(y)
    with pytest.raises(vx.InvalidTarget, match="no pixel inside"):
        Region(1, np.zeros((2, 2)))
    with pytest.raises(vx.InvalidTarget, match=r"segmentation output \(N, K, H, W\)"):
        Region(1, mask).score(torch.zeros(2, 3))


def test_similarity_by_hand():
    e = torch.tensor([[3.0, 4.0], [1.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    close(Similarity([0.0, 2.0]).score(e), [[0.8], [0.0], [0.0]], atol=1e-12)  # a zero embedding scores 0
    close(Similarity([[0.0, 1.0], [1.0, 1.0], [1.0, 0.0]]).score(e)[:, 1], [7 / (5 * 2**0.5), 1 / 2**0.5, 0.0], atol=1e-12)
    with pytest.raises(vx.InvalidTarget, match="zero length"):
        Similarity([0.0, 0.0])
    with pytest.raises(vx.InvalidTarget, match=r"embedding output \(N, 3\)"):
        Similarity([1.0, 2.0, 3.0]).score(e)


def test_text_forms(tmp_path):
    import cv2

    assert vx.targets.parse("3") == 3 and vx.targets.parse("cat", ["dog", "cat"]) == 1 and vx.targets.parse(None) is None
    box = vx.targets.parse("box=1,2,10,12.5:cat", ["dog", "cat"])
    assert isinstance(box, Box) and box.boxes.tolist() == [[1, 2, 10, 12.5]] and box.labels.tolist() == [1]
    assert vx.targets.parse("box=1,2,10,12").labels.tolist() == [-1]
    mask = np.zeros((4, 4), np.uint8)
    mask[:2, :2] = 255
    cv2.imwrite(str(tmp_path / "mask.png"), mask)
    region = vx.targets.parse(f"region={tmp_path / 'mask.png'}:2", input_size=(8, 8))
    expected = np.zeros((8, 8), bool)
    expected[:4, :4] = True  # nearest-neighbour resize to the model input
    assert region.labels.tolist() == [2] and (region.masks[0].numpy() == expected).all()
    np.save(tmp_path / "v.npy", np.array([1.0, 0.0]))
    assert vx.targets.parse(f"similarity={tmp_path / 'v.npy'}").vectors.tolist() == [[1.0, 0.0]]
    for text, message in [
        ("giraffe", r"class index or a class name, or KIND=VALUE \(box=..., region=..., similarity=...\)"),
        ("box=1,2,3", "box= takes x0,y0,x1,y1"),
        ("box=1,2,3,4:zebra", "label must be a class index or a class name"),
        ("circle=1,2", "unknown target kind 'circle'"),
        (f"region={tmp_path / 'missing.png'}", "missing.png"),
        (f"similarity={tmp_path / 'missing.npy'}", "cannot read"),
    ]:
        with pytest.raises(vx.VexplainError, match=message) as caught:
            vx.targets.parse(text, ["dog", "cat"])
        assert "\n" not in str(caught.value)
