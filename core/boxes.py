"""``Box``: the detection target, with decoders for the common detector output layouts.

Layouts (``layout=``; ``"auto"`` infers them, see ``infer_layout``):

- ``"yolov8"``: a tensor ``(N, 4 + K, A)``: for each of A anchors cx, cy, w, h (input pixels), then
  K class scores; an anchor's class is its highest-scoring one, its score that class's score.
- ``"yolov8_rows"``: the same transposed, ``(N, A, 4 + K)`` (some exports).
- ``"yolov5"``: a tensor ``(N, A, 5 + K)``: cx, cy, w, h, objectness, K class probabilities; an
  anchor's class is its most probable one, its score objectness · that probability.
- ``"torchvision"``: a list of N dicts with ``boxes`` ``(M, 4)`` xyxy, ``labels`` ``(M,)`` and
  ``scores`` ``(M,)`` (torchvision's detection models in eval mode).

Everything is vectorised over anchors and rows; the torchvision layout loops over its images
(that is its structure).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from .errors import InvalidTarget
from .notices import warn
from .target_kinds import _check_labels, _labels, _split_label, pick_output
from .targets import Target

LAYOUTS = ("auto", "yolov8", "yolov8_rows", "yolov5", "torchvision")
#: IoU elements computed at once (rows × references × anchors) before references are chunked
_CHUNK = 1 << 24


def box_iou(references: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """IoU ``(rows, T, A)`` of ``references`` ``(T, 4)`` with ``boxes`` ``(rows, A, 4)``, all xyxy:
    area(∩) / area(∪), 0 where the union is empty."""
    r = references[None, :, None, :]
    b = boxes[:, None, :, :]
    wide = (torch.minimum(r[..., 2], b[..., 2]) - torch.maximum(r[..., 0], b[..., 0])).clamp_min(0)
    high = (torch.minimum(r[..., 3], b[..., 3]) - torch.maximum(r[..., 1], b[..., 1])).clamp_min(0)
    inter = wide * high
    area = lambda x: (x[..., 2] - x[..., 0]).clamp_min(0) * (x[..., 3] - x[..., 1]).clamp_min(0)
    union = area(r) + area(b) - inter
    return torch.where(union > 0, inter / union.clamp_min(torch.finfo(union.dtype).tiny), torch.zeros_like(inter))


def infer_layout(output: Any) -> str:
    """The layout of a raw detector output: a list/tuple of dicts → ``torchvision``; a tensor
    ``(N, a, b)``: the anchor axis is the longer one, last for ``yolov8`` (a ≥ 5, a < b), in the
    middle for ``yolov5`` (b ≥ 6, b < a); anything else (a = b, too few columns) is ambiguous and
    raises ``InvalidTarget`` asking for ``layout=``."""
    if isinstance(output, (list, tuple)) and output and all(isinstance(o, dict) for o in output):
        return "torchvision"
    if isinstance(output, torch.Tensor) and output.dim() == 3:
        a, b = output.shape[1:]
        if 5 <= a < b:
            return "yolov8"
        if 6 <= b < a:
            return "yolov5"
    shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
    raise InvalidTarget(f"Box cannot tell the detector layout of an output {shape}; give layout= one of {', '.join(LAYOUTS[1:])}")


def decode(output: torch.Tensor, layout: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(boxes xyxy ``(N, A, 4)``, score ``(N, A)``, class ``(N, A)``) of a YOLO-style tensor."""
    if output.dim() != 3:
        raise InvalidTarget(f"Box layout '{layout}' takes a tensor (N, rows, columns); got {tuple(output.shape)}")
    rows = output.transpose(1, 2) if layout == "yolov8" else output  # (N, A, columns)
    first = 5 if layout == "yolov5" else 4
    if rows.shape[2] <= first:
        raise InvalidTarget(f"Box layout '{layout}' needs more than {first} values per anchor; got an output {tuple(output.shape)}")
    top, cls = rows[..., first:].max(dim=2)
    score = top * rows[..., 4] if layout == "yolov5" else top
    cx, cy, w, h = rows[..., 0], rows[..., 1], rows[..., 2], rows[..., 3]
    boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=2)
    return boxes, score, cls


class Box(Target):
    """Detection: the score of the predicted box of class ``label`` that best overlaps ``box``.

    For the reference ``box`` (x0, y0, x1, y1 in input pixels): candidates are the predicted boxes
    whose class is ``label`` (any class when None), whose IoU with ``box`` is ≥ ``iou`` and whose
    score is ≥ ``min_score``; the target's score is the score of the candidate with the highest IoU
    (the first on ties), plus that IoU when ``add_iou``, and 0 when there is no candidate (recorded
    in ``exp.warnings`` for the unperturbed input). Gradients flow through the chosen box's score
    (and its coordinates with ``add_iou``). ``box`` ``(N, 4)`` (with ``label`` an int or N ints) gives
    one box per input; so does a list of N ``Box`` objects.

    Defaults: ``label`` None, ``iou`` 0.5, ``layout`` "auto" (``infer_layout``), ``min_score`` 0.0,
    ``add_iou`` False, ``output`` None (the only output). pytorch-grad-cam's
    ``FasterRCNNBoxScoreTarget`` differs: it takes the best-IoU box of any class and scores 0 when
    that box's label differs, needs IoU > threshold (strictly), always adds the IoU, and sums one
    target over several reference boxes (give one ``Box`` per box and add their scores).
    Text form (CLI ``box=``): ``x0,y0,x1,y1[:label]``.
    """

    name = "box"
    summary = "detection: the score of the predicted box of a class that best overlaps a reference box"

    def __init__(self, box: Any, label: Any = None, iou: float = 0.5, layout: str = "auto", min_score: float = 0.0,
                 add_iou: bool = False, output: str | int | None = None):
        array = np.asarray(box.detach().cpu() if isinstance(box, torch.Tensor) else box, dtype=np.float64)
        if array.ndim not in (1, 2) or array.shape[-1] != 4 or not np.isfinite(array).all():
            raise InvalidTarget(f"Box: box must be 4 finite numbers x0, y0, x1, y1 (or (N, 4), one per input); got shape {array.shape}")
        array = array.reshape(-1, 4)
        if not ((array[:, 2] > array[:, 0]) & (array[:, 3] > array[:, 1])).all():
            raise InvalidTarget(f"Box: each box needs x1 > x0 and y1 > y0 (x0, y0, x1, y1 in input pixels); got {array.tolist()}")
        if not (isinstance(iou, (int, float)) and 0 <= iou <= 1) or isinstance(iou, bool):
            raise InvalidTarget(f"Box: iou must be a number in [0, 1]; got {iou!r}")
        if layout not in LAYOUTS:
            raise InvalidTarget(f"Box: layout must be one of {', '.join(LAYOUTS)}; got {layout!r}")
        self.count = len(array) if np.ndim(box) == 2 else None
        self.boxes = torch.from_numpy(array)
        self.labels = _labels(label, self.count, "Box")
        self.iou, self.layout, self.min_score, self.add_iou, self.output = float(iou), layout, float(min_score), bool(add_iou), output

    def score(self, output: Any) -> torch.Tensor:
        if not (isinstance(output, (list, tuple)) and output and all(isinstance(o, dict) for o in output)):
            output = pick_output(output, self.output, "Box")
        layout = infer_layout(output) if self.layout == "auto" else self.layout
        if layout == "torchvision":
            return torch.cat([self._match_one(image) for image in _detections(output)])
        if not isinstance(output, torch.Tensor):
            raise InvalidTarget(f"Box layout '{layout}' takes a tensor; got {type(output).__name__}")
        boxes, score, cls = decode(output, layout)
        classes = output.shape[1 if layout == "yolov8" else 2] - (5 if layout == "yolov5" else 4)
        _check_labels(self.labels, classes, "Box")
        return self._match(boxes, score, cls)

    def _match_one(self, image: dict) -> torch.Tensor:
        boxes, scores, labels = image["boxes"], image["scores"], image["labels"]
        if len(boxes) == 0:
            return (scores.sum() * 0).expand(1, len(self.boxes))  # no detections: 0, still part of the graph
        return self._match(boxes[None], scores[None], labels[None].long())

    def _match(self, boxes: torch.Tensor, score: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
        """Scores ``(rows, T)`` for the T reference boxes over predicted ``boxes`` ``(rows, A, 4)``."""
        references = self.boxes.to(device=boxes.device, dtype=boxes.dtype)
        labels = self.labels.to(boxes.device)
        step = max(1, _CHUNK // max(1, boxes.shape[0] * boxes.shape[1]))
        parts = []
        for start in range(0, len(references), step):  # references in chunks: memory stays bounded
            iou = box_iou(references[start : start + step], boxes)  # (rows, t, A)
            wanted = labels[start : start + step, None]
            candidate = (iou >= self.iou) & ((wanted < 0) | (cls[:, None, :] == wanted)) & (score[:, None, :] >= self.min_score)
            best = torch.where(candidate, iou, torch.full_like(iou, -1.0)).argmax(dim=2)  # (rows, t)
            value = score.gather(1, best)
            if self.add_iou:
                value = value + iou.gather(2, best[..., None]).squeeze(2)
            parts.append(torch.where(candidate.any(dim=2), value, torch.zeros_like(value)))
        return torch.cat(parts, dim=1)

    def check(self, scores: torch.Tensor) -> None:
        zero = (scores == 0).nonzero().flatten().tolist()
        if zero:
            which = "every input" if len(zero) == len(scores) else f"inputs {zero}"
            warn(f"{self.describe()}: {which} scored 0: no predicted box of that class overlaps it with IoU >= {self.iou:g} "
                 f"(or its score is 0), so the map explains nothing; check the box (x0, y0, x1, y1 in input pixels), the label and the layout")

    def describe(self) -> str:
        label = "any class" if self.count is None and int(self.labels[0]) < 0 else (
            f"label {int(self.labels[0])}" if self.count is None else f"labels {self.labels.tolist()}")
        where = [round(v, 2) for v in self.boxes[0].tolist()] if self.count is None else f"{self.count} boxes"
        return f"box {where} {label} iou {self.iou:g} layout {self.layout}"

    @classmethod
    def from_text(cls, text: str, class_names: Sequence[str] | None = None, input_size: tuple[int, int] | None = None) -> "Box":
        """``x0,y0,x1,y1[:label]`` in input pixels; ``label`` an int or a class name."""
        coords, label = _split_label(text, class_names, "box=")
        try:
            values = [float(v) for v in coords.split(",")]
        except ValueError:
            values = []
        if len(values) != 4:
            raise InvalidTarget(f"box= takes x0,y0,x1,y1[:label] (4 numbers in input pixels); got {text!r}")
        return cls(values, label)

    @classmethod
    def stack(cls, targets: Sequence["Target"]) -> "Box | None":
        settings = {(t.iou, t.layout, t.min_score, t.add_iou, t.output, t.count) for t in targets}
        if len(settings) != 1 or targets[0].count is not None:
            return None
        first = targets[0]
        labels = torch.cat([t.labels for t in targets])  # -1: any class
        return cls(torch.cat([t.boxes for t in targets]), labels, first.iou, first.layout, first.min_score, first.add_iou, first.output)


def _detections(output: Sequence[dict]) -> list[dict]:
    """The per-image dicts of a torchvision-style output, checked for boxes, labels and scores."""
    for i, image in enumerate(output):
        missing = [k for k in ("boxes", "labels", "scores") if k not in image]
        if missing:
            raise InvalidTarget(f"Box layout 'torchvision' needs dicts with boxes, labels and scores; image {i} lacks {', '.join(missing)}")
    return list(output)
