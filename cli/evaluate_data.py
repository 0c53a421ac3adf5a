"""The data sets ``vexplain evaluate`` runs on: the shipped generated scenes, or a folder of images
with a ground-truth file.

Ground-truth file (JSON, default ``FOLDER/boxes.json``): image file name → an object with any of
``"box": [x0, y0, x1, y1]`` (pixels of the original image, end-exclusive), ``"mask": "file.png"``
(relative to the JSON file; nonzero pixels are the object) and ``"label"`` (class index or class
name, the class to explain; default the model's top class).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vexplain import ModelAdapter
from vexplain.errors import ImageLoadError, InvalidInput, InvalidOption
from vexplain.files import json_depth, read_json_file
from vexplain.images import load_image, preprocess

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
TRUTH_FILE = "boxes.json"
MAX_TRUTH_BYTES = 64 << 20  # a box, mask name and label per image: millions of images fit


@dataclass
class DataSet:
    """Images as shown (uint8 RGB ``(N, H, W, 3)`` at input size), model inputs, and ground truth."""

    name: str
    names: list[str]
    images: np.ndarray
    inputs: np.ndarray
    labels: np.ndarray | None  # int64 (N,): classes to explain, None = top class
    masks: np.ndarray | None  # bool (N, H, W), None = no ground truth
    boxes: np.ndarray | None  # int64 (N, 4) when the truth came as boxes (drawn in the report)


def demo_set(count: int, seed: int) -> tuple[ModelAdapter, DataSet]:
    """The shipped demo model and ``count`` generated scenes with their object boxes and labels."""
    from vexplain.evaluation import as_masks
    from vexplain.demo.model import demo_adapter, load_metadata, preprocess as demo_preprocess
    from vexplain.demo.scenes import generate_dataset

    meta = load_metadata()
    adapter = demo_adapter()
    images, labels, boxes = generate_dataset(count, seed=seed, size=int(meta["input_size"][0]))
    masks = as_masks(boxes, count, images.shape[1:3]).numpy()
    names = [f"scene_{i:03d}" for i in range(count)]
    data = DataSet(f"generated demo scenes (seed {seed})", names, images, demo_preprocess(images), labels, masks, boxes)
    return adapter, data


def folder_set(folder: str, truth: str | None, adapter: ModelAdapter, count: int | None, size: Any, mean: Any, std: Any) -> DataSet:
    """Image files of ``folder`` (sorted by name, the first ``count``), resized to ``size``, with the
    ground truth of ``truth`` (default ``folder/boxes.json`` when present)."""
    import cv2

    root = Path(folder)
    if not root.is_dir():
        raise ImageLoadError(f"--data must be a folder of images; {root} is not a folder")
    truth_path = Path(truth) if truth else (root / TRUTH_FILE if (root / TRUTH_FILE).is_file() else None)
    entries = _read_truth(truth_path) if truth_path else {}
    mask_files = {str(e["mask"]) for e in entries.values() if isinstance(e, dict) and "mask" in e}
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.name not in mask_files)
    if not files:
        raise ImageLoadError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {root}")
    files = files[:count] if count else files
    originals = [load_image(p) for p in files]
    size = tuple(size or adapter.metadata.get("input_size") or originals[0].shape[:2])
    shown = np.stack([cv2.resize(o, (int(size[1]), int(size[0])), interpolation=cv2.INTER_LINEAR) for o in originals])
    inputs = np.stack([preprocess(o, size, mean, std) for o in originals])
    labels, masks, boxes = None, None, None
    if truth_path is not None:
        missing = [p.name for p in files if p.name not in entries]
        if missing:
            raise InvalidInput(f"{truth_path} has no entry for {', '.join(missing[:5])}; give every image a box or mask")
        class_names = adapter.metadata.get("class_names")
        found = [_truth_of(entries[p.name], o.shape[:2], size, truth_path, class_names) for p, o in zip(files, originals)]
        masks = np.stack([mask for mask, _, _ in found])
        unlabelled = [p.name for p, (_, label, _) in zip(files, found) if label is None]
        if unlabelled and len(unlabelled) < len(found):
            raise InvalidInput(f"{truth_path}: {', '.join(unlabelled[:5])} have no \"label\" while others do; label every image or none (then each image's top class is explained)")
        if not unlabelled:
            labels = np.array([label for _, label, _ in found], dtype=np.int64)
        if all(box is not None for _, _, box in found):
            boxes = np.array([box for _, _, box in found], dtype=np.int64)
    return DataSet(str(root), [p.name for p in files], shown, inputs, labels, masks, boxes)


def _read_truth(path: Path) -> dict[str, Any]:
    """The ground-truth file: at most ``MAX_TRUTH_BYTES`` of UTF-8 JSON, an object of objects, nested
    at most 4 levels; each entry's fields are checked by ``_truth_of``."""
    data = read_json_file(path, f"ground truth {path}", MAX_TRUTH_BYTES, InvalidInput)
    if not isinstance(data, dict):
        raise InvalidInput(f"ground truth {path} must be a JSON object: image name -> {{'box': [x0, y0, x1, y1]}} or {{'mask': 'file.png'}}")
    if json_depth(data) > 4:
        raise InvalidInput(f"ground truth {path} is nested too deeply; each entry is {{'box': [x0, y0, x1, y1], 'mask': 'file.png', 'label': class}}")
    return data


def _truth_of(entry: Any, original: tuple[int, int], size: tuple[int, int], path: Path, class_names: Any) -> tuple[np.ndarray, int | None, list[int] | None]:
    """(mask at input size, label or None, box at input size or None) of one entry."""
    import cv2

    if not isinstance(entry, dict) or not ({"box", "mask"} & set(entry)):
        raise InvalidInput(f"each entry of {path} needs 'box': [x0, y0, x1, y1] or 'mask': 'file.png'; got {_short(entry)}")
    height, width = size
    sy, sx = height / original[0], width / original[1]
    mask = np.zeros((height, width), bool)
    box = None
    if "box" in entry:
        values = entry["box"]
        if not (isinstance(values, list) and len(values) == 4 and all(_finite(v) for v in values) and values[0] < values[2] and values[1] < values[3]):
            raise InvalidInput(f"a box in {path} must be [x0, y0, x1, y1], finite numbers with x0 < x1 and y0 < y1; got {_short(values)}")
        x0, y0 = int(np.floor(values[0] * sx)), int(np.floor(values[1] * sy))
        x1, y1 = int(np.ceil(values[2] * sx)), int(np.ceil(values[3] * sy))
        box = [max(0, x0), max(0, y0), min(width, x1), min(height, y1)]
        mask[box[1] : box[3], box[0] : box[2]] = True
    if "mask" in entry:
        if not isinstance(entry["mask"], str) or not entry["mask"]:
            raise InvalidInput(f"a mask in {path} must be an image file name relative to {path.name}; got {_short(entry['mask'])}")
        picture = load_image(path.parent / entry["mask"]).max(axis=2)
        mask |= cv2.resize(picture, (width, height), interpolation=cv2.INTER_NEAREST) > 0
    label = entry.get("label")
    if isinstance(label, str):
        if not class_names or label not in class_names:
            raise InvalidOption(f"label {_short(label)} in {path} is not a class name of the model")
        label = class_names.index(label)
    elif label is not None and (isinstance(label, bool) or not isinstance(label, int) or label < 0):
        raise InvalidInput(f"a label in {path} must be a class index >= 0 or a class name; got {_short(label)}")
    return mask, label, box


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
