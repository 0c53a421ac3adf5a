"""Procedural scenes: one labelled shape on a cluttered background.

The label depends only on the shape of the object.  The background (smooth
colour gradient plus low-frequency noise) and the distractors (thin lines,
zig-zags, arcs and small dots) carry no class information, so a classifier has
to look at the object itself, which makes the scenes suitable for checking
attribution / saliency methods against the known object box.

Only numpy and OpenCV are used; everything is deterministic given the
``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

CLASS_NAMES: tuple[str, ...] = ("circle", "square", "triangle", "cross")

_SHIFT = 4  # fixed-point bits for sub-pixel cv2 drawing
_SCALE = 1 << _SHIFT


class Scene(NamedTuple):
    """One generated scene.

    ``image`` is uint8 RGB (H, W, 3); ``label`` indexes :data:`CLASS_NAMES`;
    ``box`` is ``(x0, y0, x1, y1)``, inclusive-exclusive pixel bounds of the
    object (every pixel the object touches satisfies ``x0 <= x < x1``).
    """

    image: np.ndarray
    label: int
    box: tuple[int, int, int, int]


def _unit_polygon(label: int, rng: np.random.Generator) -> np.ndarray:
    """Outline of the class shape, centred at the origin, shape (N, 2)."""
    name = CLASS_NAMES[label]
    if name == "circle":
        t = np.linspace(0.0, 2.0 * np.pi, 64, endpoint=False)
        return np.stack([np.cos(t), np.sin(t)], axis=1)
    if name == "square":
        return np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64)
    if name == "triangle":
        t = np.deg2rad(np.array([90.0, 210.0, 330.0]) + rng.uniform(-8, 8, 3))
        return np.stack([np.cos(t), np.sin(t)], axis=1)
    if name == "cross":
        a = rng.uniform(0.28, 0.40)  # half arm thickness relative to half length
        return np.array(
            [[-a, -1], [a, -1], [a, -a], [1, -a], [1, a], [a, a],
             [a, 1], [-a, 1], [-a, a], [-1, a], [-1, -a], [-a, -a]],
            dtype=np.float64,
        )
    raise ValueError(f"unknown label {label}")


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth random colour gradient plus low-frequency colour noise, uint8."""
    c0, c1 = rng.uniform(0, 255, (2, 3))
    theta = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / (size - 1)
    t = (np.cos(theta) * xx + np.sin(theta) * yy)
    t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
    img = c0 * (1 - t[..., None]) + c1 * t[..., None]
    grid = int(rng.integers(3, 7))
    noise = rng.normal(0.0, rng.uniform(15, 40), (grid, grid, 3))
    noise = cv2.resize(noise.astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    return np.clip(np.round(img + noise), 0, 255).astype(np.uint8)


def _pt(p: np.ndarray) -> tuple[int, int]:
    return int(round(p[0] * _SCALE)), int(round(p[1] * _SCALE))


def _draw_distractors(img: np.ndarray, rng: np.random.Generator, size: int) -> None:
    """Draw thin open strokes and small dots that resemble none of the classes."""
    for _ in range(int(rng.integers(4, 10))):
        colour = tuple(float(c) for c in rng.uniform(0, 255, 3))
        thick = int(rng.integers(1, 3))
        kind = int(rng.integers(0, 4))
        if kind == 0:  # straight line
            p, q = rng.uniform(-4, size + 4, (2, 2))
            cv2.line(img, _pt(p), _pt(q), colour, thick, cv2.LINE_AA, _SHIFT)
        elif kind == 1:  # open zig-zag polyline
            start = rng.uniform(0, size, 2)
            steps = rng.normal(0, size / 6, (int(rng.integers(2, 5)), 2))
            pts = np.cumsum(np.vstack([start, steps]), axis=0)
            poly = np.array([_pt(p) for p in pts], dtype=np.int32)
            cv2.polylines(img, [poly], False, colour, thick, cv2.LINE_AA, _SHIFT)
        elif kind == 2:  # open arc (never a full circle)
            c = rng.uniform(0, size, 2)
            axes = rng.uniform(4, size / 2.5, 2)
            start = rng.uniform(0, 360)
            span = rng.uniform(40, 200)
            cv2.ellipse(img, _pt(c), (int(axes[0] * _SCALE), int(axes[1] * _SCALE)),
                        float(rng.uniform(0, 180)), start, start + span, colour,
                        thick, cv2.LINE_AA, _SHIFT)
        else:  # a few small elongated blobs
            for _ in range(int(rng.integers(1, 4))):
                c = rng.uniform(0, size, 2)
                axes = (int(rng.uniform(1.5, 3.5) * _SCALE), int(rng.uniform(0.7, 1.4) * _SCALE))
                cv2.ellipse(img, _pt(c), axes, float(rng.uniform(0, 180)), 0, 360,
                            colour, -1, cv2.LINE_AA, _SHIFT)


def _object_colour(bg_mean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random colour that differs clearly from the local background colour."""
    for _ in range(20):
        colour = rng.uniform(0, 255, 3)
        if np.linalg.norm(colour - bg_mean) >= 90.0:
            return colour
    return 255.0 - bg_mean


def generate_scene(rng: np.random.Generator, size: int = 64) -> Scene:
    """Generate one scene of ``size`` x ``size`` pixels.

    The object is one shape from :data:`CLASS_NAMES` whose extent is roughly
    22-40 % of ``size`` (14-26 px at 64x64), randomly rotated, coloured and
    placed fully inside the image, drawn over a cluttered background.
    """
    label = int(rng.integers(0, len(CLASS_NAMES)))
    img = _background(rng, size)
    _draw_distractors(img, rng, size)

    poly = _unit_polygon(label, rng)
    ang = rng.uniform(0, 2 * np.pi)
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    poly = poly @ rot.T
    poly -= (poly.max(0) + poly.min(0)) / 2
    extent = rng.uniform(14, 26) * size / 64.0
    poly *= extent / (poly.max(0) - poly.min(0)).max()
    lo, hi = poly.min(0), poly.max(0)
    centre = np.array([rng.uniform(1 - lo[0], size - 1 - hi[0]),
                       rng.uniform(1 - lo[1], size - 1 - hi[1])])
    poly += centre

    # OpenCV anti-aliases only 8-bit images, so rasterise the coverage as uint8.
    mask = np.zeros((size, size), np.uint8)
    pts = np.round(poly * _SCALE).astype(np.int32)
    cv2.fillPoly(mask, [pts], 255, cv2.LINE_AA, _SHIFT)
    alpha = mask.astype(np.float32) / 255.0

    ys, xs = np.nonzero(alpha > 0)
    box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    bg_mean = img[box[1]:box[3], box[0]:box[2]].reshape(-1, 3).mean(0)
    img = img.astype(np.float32)
    colour = _object_colour(bg_mean, rng).astype(np.float32)

    img = img * (1 - alpha[..., None]) + colour * alpha[..., None]
    img += rng.normal(0.0, 4.0, img.shape).astype(np.float32)
    image = np.clip(np.round(img), 0, 255).astype(np.uint8)
    return Scene(image=image, label=label, box=box)


def generate_dataset(n: int, seed: int, size: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Generate ``n`` scenes deterministically from ``seed``.

    Returns ``(images, labels, boxes)``: uint8 (n, size, size, 3) RGB images,
    int64 (n,) labels and int64 (n, 4) boxes ``(x0, y0, x1, y1)``.
    """
    rng = np.random.default_rng(seed)
    images = np.empty((n, size, size, 3), np.uint8)
    labels = np.empty((n,), np.int64)
    boxes = np.empty((n, 4), np.int64)
    for i in range(n):
        scene = generate_scene(rng, size)
        images[i], labels[i], boxes[i] = scene.image, scene.label, scene.box
    return images, labels, boxes
