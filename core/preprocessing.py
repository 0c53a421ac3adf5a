"""Photos of any shape into a model's input, following its metadata, and maps back onto the photo.

A model's metadata (``core/model_metadata.py``) says how a photo becomes its input:

- ``input_size`` = (h, w): the model's input; without it the photo is used at its own size.
- ``resize`` (default ``"shorter"``):
  ``"shorter"``: one scale factor for both axes, the smallest that makes the photo cover (h, w)
  (its shorter side, relative to the input, becomes the input's); with ``resize_shorter`` = S the
  shorter side becomes S instead (ImageNet: S = 256 for a 224 input);
  ``"longer"``: one factor, the largest that fits the whole photo inside (h, w);
  ``"exact"``: each axis scaled to (h, w) on its own: the aspect ratio changes unless it was h:w.
- ``crop`` (default ``"center"``): ``"center"`` takes (h, w) from the middle of the resized photo
  (offsets ``(H_r - h) // 2``, ``(W_r - w) // 2``); ``"letterbox"`` pads the resized photo to
  (h, w) with the normalisation ``mean`` (input value 0), the photo in the middle (same offsets);
  ``"none"`` gives the model the resized photo as it is (models that take any size).
  Pairs allowed: shorter+center, shorter+none, longer+letterbox, longer+none, exact+none.

The defaults are torchvision's and timm's ImageNet evaluation transform (resize, centre crop): a
photo is never distorted, and a photo already of the input's shape is only resized. The demo
model says shorter+center too: it was trained on square 64×64 scenes and its ONNX export takes
only 64×64.

Resizing is OpenCV's: ``INTER_AREA`` when both axes shrink (no aliasing), else ``INTER_LINEAR``.
Each input's *record* (a JSON-able dict, ``exp.options["preprocess"][i]``) holds the photo's
``original_size`` (H, W), ``input_size``, ``resize``, ``crop``, ``resized_size`` (H_r, W_r),
``offset`` (dy, dx: where the resized photo's top-left corner lies in model pixels; negative for a
crop, positive for a letterbox) and ``crop_box`` (x0, y0, x1, y1: the part of the photo the model
sees, in original pixels, floats, end-exclusive).

Back at the photo's resolution (``map_to_original``): original pixel (y, x) takes the model map's
bilinear value at model coordinates ``((y + 0.5) · H_r / H + dy - 0.5, (x + 0.5) · W_r / W + dx - 0.5)``
(pixel centres, edges replicated), and is **NaN** where that pixel's centre falls outside the
model's input (the part a centre crop cut away: the method said nothing about it). A letterbox's
padding is outside the photo, so it never appears there.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .errors import InvalidInput, InvalidOption
from .images import MAX_SIDE

RESIZE_MODES = ("shorter", "longer", "exact")
CROP_MODES = ("center", "letterbox", "none")
ALLOWED = {("shorter", "center"), ("shorter", "none"), ("longer", "letterbox"), ("longer", "none"), ("exact", "none")}
DEFAULT_RESIZE = "shorter"
DEFAULT_CROP = "center"
#: a change of aspect ratio larger than this fraction is stated in ``exp.warnings``
ASPECT_TOLERANCE = 0.01
STRIP_ROWS = 256


@dataclass(frozen=True)
class Preprocessing:
    """How photos become inputs (see the module docstring for each field's meaning)."""

    size: tuple[int, int] | None = None
    resize: str = DEFAULT_RESIZE
    crop: str = DEFAULT_CROP
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    resize_shorter: int | None = None

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_MODES:
            raise InvalidOption(f"resize must be one of {', '.join(RESIZE_MODES)}; got {self.resize!r}")
        if self.crop not in CROP_MODES:
            raise InvalidOption(f"crop must be one of {', '.join(CROP_MODES)}; got {self.crop!r}")
        if (self.resize, self.crop) not in ALLOWED:
            pairs = ", ".join(f"{r}+{c}" for r, c in sorted(ALLOWED))
            raise InvalidOption(f"resize={self.resize!r} with crop={self.crop!r} is not a preprocessing; use one of {pairs}")
        if self.size is not None and (len(self.size) != 2 or not all(0 < int(s) <= MAX_SIDE for s in self.size)):
            raise InvalidOption(f"size must be (height, width) of ints in 1..{MAX_SIDE}; got {tuple(self.size)}")
        if self.resize_shorter is not None:
            if self.resize != "shorter" or self.size is None or not 0 < int(self.resize_shorter) <= MAX_SIDE:
                raise InvalidOption(f"resize_shorter needs resize='shorter', an input size and a side in 1..{MAX_SIDE}; got {self.resize_shorter!r}")
            if self.crop == "center" and int(self.resize_shorter) < min(self.size):
                raise InvalidOption(f"resize_shorter={self.resize_shorter} is smaller than the input {tuple(self.size)}: a centre crop needs it at least {min(self.size)}")


def from_metadata(
    metadata: dict[str, Any] | None,
    size: Sequence[int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    resize: str | None = None,
    crop: str | None = None,
) -> Preprocessing:
    """The model's preprocessing: each argument given here wins over ``metadata``'s key of the
    same name (``size`` over ``input_size``), which wins over the defaults."""
    meta = metadata or {}
    chosen_size = size if size is not None else meta.get("input_size")
    return Preprocessing(
        size=None if chosen_size is None else (int(chosen_size[0]), int(chosen_size[1])),
        resize=resize or meta.get("resize", DEFAULT_RESIZE),
        crop=crop or meta.get("crop", DEFAULT_CROP),
        mean=tuple(float(v) for v in (mean or meta.get("mean") or (0.0, 0.0, 0.0))),
        std=tuple(float(v) for v in (std or meta.get("std") or (1.0, 1.0, 1.0))),
        resize_shorter=meta.get("resize_shorter") if size is None else None,
    )


def plan(original: tuple[int, int], spec: Preprocessing) -> dict[str, Any]:
    """The record for a photo of ``original`` = (H, W) pixels (no pixels touched)."""
    height, width = int(original[0]), int(original[1])
    if spec.size is None:
        input_h, input_w = height, width
        resized = (height, width)
    else:
        input_h, input_w = spec.size
        if spec.resize == "exact":
            resized = (input_h, input_w)
        else:
            if spec.resize_shorter is not None:
                scale = int(spec.resize_shorter) / min(height, width)
            elif spec.resize == "shorter":
                scale = max(input_h / height, input_w / width)
            else:
                scale = min(input_h / height, input_w / width)
            resized = (max(1, round(height * scale)), max(1, round(width * scale)))
            if spec.crop == "center":  # rounding never leaves the covering photo short of the input
                resized = (max(resized[0], input_h), max(resized[1], input_w))
            elif spec.crop == "letterbox":
                resized = (min(resized[0], input_h), min(resized[1], input_w))
        if spec.crop == "none":
            input_h, input_w = resized
    offset = ((input_h - resized[0]) // 2, (input_w - resized[1]) // 2) if spec.crop == "letterbox" else (
        (-((resized[0] - input_h) // 2), -((resized[1] - input_w) // 2)) if spec.crop == "center" else (0, 0)
    )
    scale_y, scale_x = resized[0] / height, resized[1] / width
    box = (
        max(0.0, -offset[1] / scale_x), max(0.0, -offset[0] / scale_y),
        min(float(width), (input_w - offset[1]) / scale_x), min(float(height), (input_h - offset[0]) / scale_y),
    )
    return {
        "original_size": [height, width],
        "input_size": [int(input_h), int(input_w)],
        "resize": spec.resize if spec.size is not None else "none",
        "crop": spec.crop if spec.size is not None else "none",
        "resized_size": [int(resized[0]), int(resized[1])],
        "offset": [int(offset[0]), int(offset[1])],
        "crop_box": [round(v, 4) for v in box],
    }


def prepare(image: np.ndarray, spec: Preprocessing) -> tuple[np.ndarray, dict[str, Any]]:
    """uint8 RGB ``(H, W, 3)`` photo → (float32 ``(3, h, w)`` input, its record)."""
    import cv2

    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        shown = (getattr(image, "shape", None), getattr(image, "dtype", type(image).__name__))
        raise InvalidInput(f"a photo must be a uint8 RGB array of shape (H, W, 3); got shape {shown[0]} dtype {shown[1]}")
    record = plan(image.shape[:2], spec)
    mean = np.asarray(spec.mean, dtype=np.float32).reshape(1, 1, -1)
    std = np.asarray(spec.std, dtype=np.float32).reshape(1, 1, -1)
    if mean.size != 3 or std.size != 3 or np.any(std <= 0):
        raise InvalidOption(f"mean and std need 3 values each, std > 0; got mean={list(spec.mean)} std={list(spec.std)}")
    resized_h, resized_w = record["resized_size"]
    if (resized_h, resized_w) != image.shape[:2]:
        shrinking = resized_h <= image.shape[0] and resized_w <= image.shape[1]
        image = cv2.resize(image, (resized_w, resized_h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    scaled = (image.astype(np.float32) / 255.0 - mean) / std
    input_h, input_w = record["input_size"]
    dy, dx = record["offset"]
    canvas = np.zeros((input_h, input_w, 3), dtype=np.float32)  # 0 = the mean colour after normalising
    top, left = max(dy, 0), max(dx, 0)
    rows, cols = min(input_h - top, resized_h - max(-dy, 0)), min(input_w - left, resized_w - max(-dx, 0))
    canvas[top:top + rows, left:left + cols] = scaled[max(-dy, 0):max(-dy, 0) + rows, max(-dx, 0):max(-dx, 0) + cols]
    return np.ascontiguousarray(canvas.transpose(2, 0, 1)), record


def model_view(image: np.ndarray, spec: Preprocessing) -> np.ndarray:
    """The photo as the model sees it, uint8 RGB ``(h, w, 3)`` (resized, cropped or padded with
    black), for overlays in model space."""
    unit = Preprocessing(spec.size, spec.resize, spec.crop, resize_shorter=spec.resize_shorter)
    array, _ = prepare(image, unit)
    return np.clip(np.round(array.transpose(1, 2, 0) * 255.0), 0, 255).astype(np.uint8)


def notice(record: dict[str, Any]) -> str | None:
    """One line when the model does not see the photo whole and undistorted, else None."""
    height, width = record["original_size"]
    input_h, input_w = record["input_size"]
    resized_h, resized_w = record["resized_size"]
    photo = f"the {width}×{height} (w×h) photo"
    if record["resize"] == "exact" and abs((input_w / input_h) / (width / height) - 1) > ASPECT_TOLERANCE:
        return (
            f"{photo} was resized to {input_w}×{input_h}, changing its aspect ratio from {width / height:.2f} to "
            f"{input_w / input_h:.2f} (resize='exact': shapes are squashed); resize='shorter' with crop='center' keeps it"
        )
    if record["crop"] == "center" and (resized_h, resized_w) != (input_h, input_w):
        x0, y0, x1, y1 = record["crop_box"]
        return (
            f"{photo} was resized to {resized_w}×{resized_h} and centre-cropped to {input_w}×{input_h} (aspect ratio "
            f"{width / height:.2f} → {input_w / input_h:.2f}): the model sees only x {x0:g}–{x1:g}, y {y0:g}–{y1:g} of it; "
            "maps at the original size are NaN outside that box"
        )
    if record["crop"] == "letterbox" and (resized_h, resized_w) != (input_h, input_w):
        return (
            f"{photo} was resized to {resized_w}×{resized_h} and padded to {input_w}×{input_h} with the mean colour "
            f"(letterbox, aspect ratio {width / height:.2f} kept): the model sees the padding too"
        )
    return None


def map_to_original(raw_map: np.ndarray, record: dict[str, Any]) -> np.ndarray:
    """A model-space ``(h, w)`` map as float32 ``(H, W)`` over the original photo (NaN outside the
    part the model saw; see the module docstring)."""
    import cv2

    values = np.asarray(raw_map, dtype=np.float32)
    if values.shape != tuple(record["input_size"]):
        raise InvalidInput(f"the map is {values.shape[0]}×{values.shape[1]} but its preprocessing record says the input was {tuple(record['input_size'])}")
    height, width = record["original_size"]
    resized_h, resized_w = record["resized_size"]
    dy, dx = record["offset"]
    ys = (np.arange(height, dtype=np.float64) + 0.5) * resized_h / height + dy
    xs = (np.arange(width, dtype=np.float64) + 0.5) * resized_w / width + dx
    mapped = np.empty((height, width), dtype=np.float32)
    for top in range(0, height, STRIP_ROWS):  # in strips: coordinate grids stay small for large photos
        rows = ys[top:top + STRIP_ROWS]
        grid_x = np.ascontiguousarray(np.broadcast_to((xs - 0.5).astype(np.float32)[None, :], (len(rows), width)))
        grid_y = np.ascontiguousarray(np.broadcast_to((rows - 0.5).astype(np.float32)[:, None], (len(rows), width)))
        mapped[top:top + len(rows)] = cv2.remap(values, grid_x, grid_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inside = ((ys >= 0) & (ys < values.shape[0]))[:, None] & ((xs >= 0) & (xs < values.shape[1]))[None, :]
    mapped[~inside] = np.nan
    return mapped


@dataclass
class PreparedImages:
    """Photos made into one batch of model inputs, with one preprocessing record per photo.

    Give it to ``vx.explain`` in place of an array: the records land in
    ``exp.options["preprocess"]`` and each photo's ``notice`` in ``exp.warnings``, so
    ``exp.map_at_original(i)`` and ``exp.overlay(photos, at="original")`` can map back.
    """

    inputs: np.ndarray
    records: list[dict[str, Any]] = field(default_factory=list)

    def notices(self) -> list[str]:
        """Each photo's ``notice``, prefixed with its index when there are several."""
        lines = []
        for i, record in enumerate(self.records):
            line = notice(record)
            if line is not None:
                lines.append(line if len(self.records) == 1 else f"input {i}: {line}")
        return lines


def prepare_images(
    images: np.ndarray | Sequence[np.ndarray],
    model: Any = None,
    size: Sequence[int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    resize: str | None = None,
    crop: str | None = None,
) -> PreparedImages:
    """uint8 RGB photos (one ``(H, W, 3)`` array or a sequence, sizes may differ) as one batch.

    ``model``: a ``ModelAdapter`` (its ``metadata``), a metadata dict, or None; the keyword
    arguments win over it (see ``from_metadata``). All photos must come out the same size (with
    ``crop="none"`` photos of different shapes do not): else ``InvalidInput``.
    """
    metadata = model if isinstance(model, dict) or model is None else getattr(model, "metadata", None)
    spec = from_metadata(metadata, size, mean, std, resize, crop)
    photos = [images] if isinstance(images, np.ndarray) and images.ndim == 3 else list(images)
    if not photos:
        raise InvalidInput("prepare_images got no photos; give one (H, W, 3) uint8 array or a list of them")
    prepared = [prepare(photo, spec) for photo in photos]
    shapes = {array.shape for array, _ in prepared}
    if len(shapes) > 1:
        raise InvalidInput(f"the photos become inputs of different sizes {sorted(s[1:] for s in shapes)}; give an input size (size= or metadata input_size) with crop 'center' or 'letterbox'")
    return PreparedImages(np.stack([array for array, _ in prepared]), [record for _, record in prepared])
