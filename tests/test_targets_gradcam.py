"""Agreement with pytorch-grad-cam's ``SemanticSegmentationTarget`` and ``FasterRCNNBoxScoreTarget``.

``Region(label, mask)`` is ``SemanticSegmentationTarget(label, mask)`` for 0/1 masks. ``Box(box,
label, iou, add_iou=True)`` is ``FasterRCNNBoxScoreTarget([label], [box], iou)`` whenever the best-IoU
predicted box of any class has ``label`` and its IoU is not exactly the threshold; the two differ
by definition otherwise (grad-cam scores 0 when the best-overlapping box has another class,
vexplain takes the best-overlapping box of the class; grad-cam needs IoU > threshold, vexplain ≥),
and grad-cam's one target sums several boxes, vexplain's one ``Box`` per box adds up the same.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import vexplain as vx
from vexplain.targets import Box, Region

from gradcam_reference import grad_cam
from models import close, images, tiny_seg_net
from target_models import tiny_yolo
from test_targets_scores import REF, torchvision_style


@pytest.fixture(scope="module")
def gc():
    return grad_cam()


def test_region_is_semantic_segmentation_target(gc):
    seg = tiny_seg_net(seed=0)
    x = torch.from_numpy(images(3, size=8, seed=5))
    output = seg(x).detach()
    mask = np.zeros((8, 8), np.float32)
    mask[1:6, 2:7] = 1.0
    for label in range(3):
        reference = [float(gc.utils.model_targets.SemanticSegmentationTarget(label, mask)(output[i])) for i in range(3)]
        close(Region(label, mask).score(output)[:, 0], reference, atol=1e-5)


def test_gradcam_with_a_region_equals_theirs(gc):
    """Their GradCAM with the segmentation target equals vexplain's gradcam layer maps after their
    per-image min-max (the layer has the input's resolution, so their resize changes nothing)."""
    seg = tiny_seg_net(seed=0)
    x = torch.from_numpy(images(2, size=8, seed=6))
    mask = np.zeros((8, 8), np.float32)
    mask[2:6, 1:5] = 1.0
    with gc.GradCAM(model=seg, target_layers=[seg.conv2]) as cam:
        theirs = cam(input_tensor=x, targets=[gc.utils.model_targets.SemanticSegmentationTarget(1, mask)] * 2)
    ours = vx.explain(seg, x, method="gradcam", targets=Region(1, mask), layer="conv2").layer_maps
    low = ours.min(axis=(1, 2), keepdims=True)
    scaled = (ours - low) / (ours.max(axis=(1, 2), keepdims=True) - low + 1e-7)
    close(scaled, theirs, atol=1e-5)


def test_box_is_faster_rcnn_box_score_target(gc):
    model = tiny_yolo(seed=0, layout="torchvision")
    detections = model(torch.from_numpy(images(2, size=16, seed=7)))
    for image in detections:
        image = {k: v.detach() for k, v in image.items()}
        for index in (0, 5, 10):
            box, label = image["boxes"][index], int(image["labels"][index])  # IoU 1 with itself: the best of any class
            reference = float(gc.utils.model_targets.FasterRCNNBoxScoreTarget([label], [box], 0.5)(image))
            ours = float(Box(box, label, iou=0.5, add_iou=True).score([image]))
            close(ours, reference, atol=1e-6)
            assert reference == pytest.approx(1.0 + float(image["scores"][index]), abs=1e-6)
        boxes = image["boxes"][[0, 5]]
        labels = [int(image["labels"][0]), int(image["labels"][5])]
        summed = float(gc.utils.model_targets.FasterRCNNBoxScoreTarget(labels, boxes, 0.5)(image))
        close(sum(float(Box(b, l, add_iou=True).score([image])) for b, l in zip(boxes, labels)), summed, atol=1e-6)


def test_the_documented_difference(gc):
    """A class-1 box with IoU 0.6 while a class-0 box overlaps with IoU 1: grad-cam looks at the
    class-0 box only and scores 0; vexplain scores the class-1 box, 0.7 + 0.6."""
    (image,) = torchvision_style()
    reference = float(gc.utils.model_targets.FasterRCNNBoxScoreTarget([1], [torch.tensor(REF, dtype=torch.float64)], 0.5)(image))
    assert reference == 0.0
    close(float(Box(REF, 1, add_iou=True).score([image])), 1.3, atol=1e-12)
