"""The ``vexplain demo`` figure: scenes (rows) × methods (columns), labelled, with colour bars.

Layout, top to bottom: a caption saying how many of the scored scenes are shown; the method names
above their columns; one row per scene with its true class written at the left of the row; and
under each column a colour bar labelled with the values its ends stand for. Each column shares
one colour scale over the scenes shown (so rows can be compared within a method): unsigned maps
min-max over the column, signed maps ±max|m| with zero at the diverging colormap's centre
(``core/colour_scale.py``). A white cross marks each map's peak, the green box the object.
With more than :data:`MAX_COLUMNS` methods the columns wrap into bands stacked top to bottom, as
even in size as possible, each band starting with the input column again, so the figure stays
about a screen wide whatever the number of methods.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from vexplain.core.colour_scale import COLOUR_BAR_HEIGHT, choose, colour, value_range, with_colour_bar
from vexplain.core.gallery import BACKGROUND, draw_box, join, mark_peak, text_tile

SCALE = 2
GAP = 4
LABEL_WIDTH = 70
TITLE_HEIGHT = 30
CAPTION_HEIGHT = 32
ALPHA = 0.5
#: method columns per band; more wrap into further bands below
MAX_COLUMNS = 12
#: space between bands (pixels)
BAND_GAP = 16


def column_overlays(images: np.ndarray, maps: np.ndarray, alpha: float = ALPHA) -> tuple[np.ndarray, str, bool]:
    """``maps`` (R, H, W) coloured on one scale shared by the column and blended over ``images``
    (R, H, W, 3); returns (overlays, colormap, signed)."""
    chosen_map, signed = choose(maps, None, None)
    low, high = value_range(maps, signed)
    values = np.nan_to_num(maps.astype(np.float64))
    if signed:
        unit = 0.5 + 0.5 * values / high if high > 0 else np.full(values.shape, 0.5)
    else:
        unit = (values - low) / (high - low) if high > low else np.zeros(values.shape)
    heat = colour(np.clip(unit, 0.0, 1.0), chosen_map).astype(np.float64)
    blended = alpha * heat + (1 - alpha) * images.astype(np.float64)
    return np.clip(np.round(blended), 0, 255).astype(np.uint8), chosen_map, signed


def demo_figure(
    images: np.ndarray,
    labels: Sequence[int],
    boxes: np.ndarray,
    columns: Mapping[str, tuple[np.ndarray, np.ndarray]],
    class_names: Sequence[str],
    scored: int,
) -> np.ndarray:
    """RGB uint8 figure of the first ``len(images)`` scenes of ``scored``; ``columns`` maps a
    method name to its (maps (R, H, W), peaks (R, 2) as row, column) for those scenes."""
    rows = len(images)
    names = list(columns)
    bands = max(1, -(-len(names) // MAX_COLUMNS))
    per_band = -(-len(names) // bands) if names else 0
    blocks = [
        _band(images, labels, boxes, {n: columns[n] for n in names[b * per_band : (b + 1) * per_band]}, class_names)
        for b in range(bands)
    ]
    width = max(block.shape[1] for block in blocks)
    body = join([_pad_width(block, width) for block in blocks], BAND_GAP, axis=0)
    caption = (
        f"showing {rows} of {scored} scenes scored; rows: each scene's true class\n"
        "one colour scale per column (bar below); +: the map's peak; green: the object's box"
    )
    return join([text_tile(caption, body.shape[1], CAPTION_HEIGHT), body], GAP, axis=0)


def _band(
    images: np.ndarray, labels: Sequence[int], boxes: np.ndarray, columns: Mapping[str, tuple[np.ndarray, np.ndarray]], class_names: Sequence[str],
) -> np.ndarray:
    """One band: titles, the input column and ``columns``' overlays per scene, colour bars."""
    import cv2

    rows = len(images)
    height, width = images.shape[1:3]
    tile_h, tile_w = height * SCALE, width * SCALE

    def big(tile: np.ndarray) -> np.ndarray:
        return cv2.resize(tile, (tile_w, tile_h), interpolation=cv2.INTER_NEAREST)

    cells: list[list[np.ndarray]] = [[big(draw_box(images[i], boxes[i]))] for i in range(rows)]
    bars = [np.full((COLOUR_BAR_HEIGHT, tile_w, 3), BACKGROUND, dtype=np.uint8)]
    for maps, peaks in columns.values():
        overlays, chosen_map, signed = column_overlays(images, maps[:rows])
        for i in range(rows):
            cells[i].append(big(mark_peak(overlays[i], tuple(peaks[i]))))
        empty = np.full((0, tile_w, 3), BACKGROUND, dtype=np.uint8)
        bars.append(with_colour_bar(empty, maps[:rows], chosen_map, signed))
    titles = [text_tile(_wrapped("input + box", tile_w), tile_w, TITLE_HEIGHT)] + [
        text_tile(_wrapped(name, tile_w), tile_w, TITLE_HEIGHT) for name in columns
    ]
    label_blank = np.full((TITLE_HEIGHT, LABEL_WIDTH, 3), BACKGROUND, dtype=np.uint8)
    lines = [join([label_blank, join(titles, GAP, axis=1)], GAP, axis=1)]
    for i in range(rows):
        label = text_tile(str(class_names[int(labels[i])]), LABEL_WIDTH, tile_h, top=tile_h // 2 + 4)
        lines.append(join([label, join(cells[i], GAP, axis=1)], GAP, axis=1))
    bar_label = text_tile("colour\nscale", LABEL_WIDTH, COLOUR_BAR_HEIGHT)
    lines.append(join([bar_label, join(bars, GAP, axis=1)], GAP, axis=1))
    return join(lines, GAP, axis=0)


def _pad_width(block: np.ndarray, width: int) -> np.ndarray:
    """``block`` padded on the right with background to ``width`` pixels."""
    if block.shape[1] == width:
        return block
    pad = np.full((block.shape[0], width - block.shape[1], 3), BACKGROUND, dtype=np.uint8)
    return np.concatenate([block, pad], axis=1)


def _wrapped(name: str, width: int) -> str:
    """``name`` on two lines at an underscore when it is too wide for ``width`` pixels."""
    chars = max(1, width // 7)
    if len(name) <= chars or "_" not in name:
        return name
    cut = max((i for i, c in enumerate(name) if c == "_" and i <= chars), default=name.index("_"))
    return name[:cut] + "\n" + name[cut:]
