"""Side-by-side figures: a grid of RGB tiles with column titles and row labels, drawn with OpenCV."""
from __future__ import annotations

from typing import Sequence

import numpy as np

FONT_SCALE = 0.4
BACKGROUND = 255


def text_tile(text: str, width: int, height: int, top: int = 12) -> np.ndarray:
    """A white ``(height, width, 3)`` tile with ``text`` in dark grey, one line per ``\\n``, the
    first line's baseline at row ``top``."""
    import cv2

    tile = np.full((height, width, 3), BACKGROUND, dtype=np.uint8)
    for i, line in enumerate(text.split("\n")):
        cv2.putText(tile, line, (3, top + 13 * i), cv2.FONT_HERSHEY_SIMPLEX, FONT_SCALE, (20, 20, 20), 1, cv2.LINE_AA)
    return tile


def grid(
    tiles: Sequence[Sequence[np.ndarray]],
    column_titles: Sequence[str] = (),
    captions: Sequence[Sequence[str]] | None = None,
    scale: int = 2,
    gap: int = 4,
) -> np.ndarray:
    """RGB uint8 figure: ``tiles[row][column]`` (all the same size) enlarged ``scale`` times, titles
    above the columns, an optional caption under each tile."""
    import cv2

    height, width = tiles[0][0].shape[:2]
    tile_h, tile_w = height * scale, width * scale
    caption_h = 16 if captions else 0
    rows = []
    if column_titles:
        titles = [text_tile(t, tile_w, 18) for t in column_titles]
        rows.append(join(titles, gap, axis=1))
    for r, row in enumerate(tiles):
        cells = []
        for c, tile in enumerate(row):
            big = cv2.resize(tile, (tile_w, tile_h), interpolation=cv2.INTER_NEAREST)
            if captions:
                big = np.concatenate([big, text_tile(captions[r][c], tile_w, caption_h)], axis=0)
            cells.append(big)
        rows.append(join(cells, gap, axis=1))
    return join(rows, gap, axis=0)


def join(parts: Sequence[np.ndarray], gap: int, axis: int) -> np.ndarray:
    """``parts`` concatenated along ``axis`` (0: stacked, 1: side by side) with ``gap`` white pixels
    between them; parts side by side must share a height (stacked: a width)."""
    spaced = []
    for i, part in enumerate(parts):
        if i:
            shape = list(part.shape)
            shape[axis] = gap
            spaced.append(np.full(shape, BACKGROUND, dtype=np.uint8))
        spaced.append(part)
    return np.concatenate(spaced, axis=axis)


def draw_box(image: np.ndarray, box: Sequence[int], color: tuple[int, int, int] = (0, 255, 0)) -> np.ndarray:
    """A copy of ``image`` with the rectangle (x0, y0, x1, y1), end-exclusive, outlined."""
    import cv2

    x0, y0, x1, y1 = (int(v) for v in box)
    out = image.copy()
    cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), color, 1)
    return out


def mark_peak(image: np.ndarray, peak: tuple[int, int], color: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """A copy of ``image`` with a small cross at ``peak`` = (row, column)."""
    import cv2

    out = image.copy()
    cv2.drawMarker(out, (int(peak[1]), int(peak[0])), color, cv2.MARKER_CROSS, 5, 1)
    return out
