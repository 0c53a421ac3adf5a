"""Colours that explain themselves: signed maps on a diverging scale centred at zero, and a colour
bar strip (drawn with OpenCV) that states the value range a picture's colours stand for.

- **Unsigned** maps (no negative values) are min-max scaled per map: min → the colormap's first
  colour, max → its last (default colormap ``jet``).
- **Signed** maps (any value below ``-SIGN_TOLERANCE × max|m|``) are scaled by max|m| per map:
  ``t = 0.5 + 0.5 · m / max|m|``, so zero is the colormap's centre, -max|m| its first colour and
  +max|m| its last (default colormap ``rdbu``, blue for negative, white at zero, red for positive).
- ``rdbu`` is vexplain's own diverging colormap (ColorBrewer's RdBu, reversed: 11 anchors
  interpolated linearly in RGB); zero maps exactly to its centre anchor ``RDBU_CENTRE``.
  Every OpenCV colormap (``jet``, ``viridis``, ...) can be chosen for either kind.
"""
from __future__ import annotations

import numpy as np

from .errors import InvalidOption
from .postprocess import normalize

SIGN_TOLERANCE = 1e-6  # negatives smaller than this fraction of the peak are rounding, not sign
DIVERGING_DEFAULT = "rdbu"
SEQUENTIAL_DEFAULT = "jet"
# ColorBrewer RdBu (11 classes), reversed: from strong blue (negative) through near-white to dark red
_RDBU = np.array(
    [
        (5, 48, 97), (33, 102, 172), (67, 147, 195), (146, 197, 222), (209, 229, 240), (247, 247, 247),
        (253, 219, 199), (244, 165, 130), (214, 96, 77), (178, 24, 43), (103, 0, 31),
    ],
    dtype=np.float64,
)
RDBU_CENTRE = tuple(int(c) for c in _RDBU[5])
COLOUR_BAR_HEIGHT = 30  # rows added below a picture: 4 margin, 10 bar, 16 labels


def is_signed(raw_map: np.ndarray) -> bool:
    """True when the map has negative values beyond rounding (see ``SIGN_TOLERANCE``)."""
    values = np.asarray(raw_map, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return False
    peak = float(np.abs(finite).max())
    return peak > 0 and float(finite.min()) < -SIGN_TOLERANCE * peak


def value_range(raw_map: np.ndarray, signed: bool) -> tuple[float, float]:
    """The values the colormap's ends stand for: (min, max), or (-max|m|, +max|m|) when ``signed``."""
    values = np.asarray(raw_map, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 0.0
    if signed:
        peak = float(np.abs(finite).max())
        return -peak, peak
    return float(finite.min()), float(finite.max())


def unit_scale(raw_map: np.ndarray, signed: bool) -> np.ndarray:
    """The map in [0, 1] as the colormap reads it (a constant unsigned map, or an all-zero signed
    one, becomes its first colour / its centre)."""
    if not signed:  # exactly the min-max scaling of ``Explanation.normalized("minmax")``
        return normalize(np.asarray(raw_map, dtype=np.float32)[None], "minmax")[0]
    values = np.nan_to_num(np.asarray(raw_map, dtype=np.float64))
    _, high = value_range(raw_map, signed)
    return np.clip(0.5 + 0.5 * values / high, 0.0, 1.0) if high > 0 else np.full(values.shape, 0.5)


def colour(unit: np.ndarray, colormap: str) -> np.ndarray:
    """Values in [0, 1] as uint8 RGB ``(..., 3)``: ``rdbu`` interpolated exactly (0.5 → ``RDBU_CENTRE``),
    an OpenCV colormap through its 256-entry table (index ``round(255 · t)``)."""
    import cv2

    unit = np.asarray(unit)  # float32 stays float32: the same table indices as ``postprocess.colorize``
    if not isinstance(colormap, str):
        raise InvalidOption(f"colormap must be a name such as 'jet' or 'rdbu'; got {colormap!r}")
    if colormap.lower() == "rdbu":
        positions = np.linspace(0.0, 1.0, len(_RDBU))
        channels = [np.interp(unit.astype(np.float64), positions, _RDBU[:, c]) for c in range(3)]
        return np.clip(np.round(np.stack(channels, axis=-1)), 0, 255).astype(np.uint8)
    code = getattr(cv2, f"COLORMAP_{colormap.upper()}", None)
    if code is None:
        known = ["rdbu"] + sorted(n[9:].lower() for n in dir(cv2) if n.startswith("COLORMAP_"))
        raise InvalidOption(f"unknown colormap {colormap!r}; choose one of: {', '.join(known)}")
    gray = np.clip(np.round(unit * 255), 0, 255).astype(np.uint8)
    flat = gray.reshape(-1, 1)
    rgb = cv2.cvtColor(cv2.applyColorMap(flat, code), cv2.COLOR_BGR2RGB)
    return rgb.reshape(*gray.shape, 3)


def choose(raw_map: np.ndarray, colormap: str | None, signed: bool | None) -> tuple[str, bool]:
    """(colormap, signed) for one map: ``signed=None`` decides from its values; ``colormap=None``
    takes ``rdbu`` for signed maps and ``jet`` for unsigned ones."""
    if signed is not None and not isinstance(signed, (bool, np.bool_)):
        raise InvalidOption(f"signed must be True, False or None (decide from the values); got {signed!r}")
    chosen_signed = is_signed(raw_map) if signed is None else bool(signed)
    chosen_map = colormap or (DIVERGING_DEFAULT if chosen_signed else SEQUENTIAL_DEFAULT)
    return chosen_map, chosen_signed


def heatmap(raw_map: np.ndarray, colormap: str | None = None, signed: bool | None = None) -> np.ndarray:
    """One ``(H, W)`` raw map coloured as uint8 RGB ``(H, W, 3)`` (see the module notes)."""
    chosen_map, chosen_signed = choose(raw_map, colormap, signed)
    return colour(unit_scale(raw_map, chosen_signed), chosen_map)


def _label(value: float) -> str:
    return f"{value:.3g}"


def with_colour_bar(picture: np.ndarray, raw_map: np.ndarray, colormap: str | None = None, signed: bool | None = None) -> np.ndarray:
    """``picture`` (uint8 RGB ``(H, W, 3)``) with a strip of ``COLOUR_BAR_HEIGHT`` rows below it: the
    colormap from left to right over the picture's width, labelled with the values its ends stand
    for (and 0 at the centre of a signed scale), in black on white."""
    import cv2

    chosen_map, chosen_signed = choose(raw_map, colormap, signed)
    low, high = value_range(raw_map, chosen_signed)
    height, width = picture.shape[:2]
    strip = np.full((COLOUR_BAR_HEIGHT, width, 3), 255, dtype=np.uint8)
    ramp = np.linspace(0.0, 1.0, width) if width > 1 else np.zeros(1)
    strip[4:14] = colour(ramp, chosen_map)[None, :, :]
    font, scale, thickness = cv2.FONT_HERSHEY_SIMPLEX, 0.35, 1
    labels = [(_label(low), 0.0), (_label(high), 1.0)] + ([("0", 0.5)] if chosen_signed else [])
    for text, where in labels:
        (text_width, _), _ = cv2.getTextSize(text, font, scale, thickness)
        x = int(round(where * (width - 1) - where * text_width))
        cv2.putText(strip, text, (max(0, x), COLOUR_BAR_HEIGHT - 4), font, scale, (0, 0, 0), thickness, cv2.LINE_AA)
    return np.concatenate([picture, strip], axis=0)
