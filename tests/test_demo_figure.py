"""The demo figure labels its rows (left) and columns (top), says how many scenes it shows of those
scored, and has a colour bar under every method column (demo/figure.py)."""
from __future__ import annotations

import numpy as np

from vexplain.core.colour_scale import COLOUR_BAR_HEIGHT, RDBU_CENTRE
from vexplain.demo.figure import BAND_GAP, CAPTION_HEIGHT, GAP, LABEL_WIDTH, MAX_COLUMNS, SCALE, TITLE_HEIGHT, column_overlays, demo_figure


def scenes(rows: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    images = np.full((rows, 16, 16, 3), 100, dtype=np.uint8)
    return images, np.arange(rows) % 2, np.tile([2, 2, 8, 8], (rows, 1))


def test_layout_rows_columns_caption_and_bars():
    images, labels, boxes = scenes(3)
    maps = np.random.default_rng(0).random((3, 16, 16)).astype(np.float32)
    peaks = np.zeros((3, 2), int)
    figure = demo_figure(images, labels, boxes, {"a": (maps, peaks), "b": (maps - 0.5, peaks)}, ["circle", "square"], scored=32)
    tile = 16 * SCALE
    width = LABEL_WIDTH + GAP + 3 * tile + 2 * GAP
    height = CAPTION_HEIGHT + GAP + TITLE_HEIGHT + 3 * (GAP + tile) + GAP + COLOUR_BAR_HEIGHT
    assert figure.shape == (height, width, 3)
    # each scene's label sits in its own row, left of its tiles: dark pixels in the label column of every row
    top = CAPTION_HEIGHT + GAP + TITLE_HEIGHT + GAP
    for r in range(3):
        label = figure[top + r * (tile + GAP): top + r * (tile + GAP) + tile, :LABEL_WIDTH]
        assert (label < 100).any()
    # a colour bar strip under each method column: coloured (not white) pixels
    bars = figure[-COLOUR_BAR_HEIGHT:, LABEL_WIDTH + GAP + tile + GAP:]
    assert (bars.std(axis=2) > 20).any()


def test_many_methods_wrap_into_even_bands(monkeypatch):
    """MAX_COLUMNS + 2 methods: two bands of equal column counts, each led by the input column,
    every method titled once; the figure is one band wide."""
    import vexplain.demo.figure as module

    written = []
    real = module.text_tile
    monkeypatch.setattr(module, "text_tile", lambda text, *a, **k: written.append(text) or real(text, *a, **k))
    images, labels, boxes = scenes(2)
    count = MAX_COLUMNS + 2
    columns = {f"m{i}": (np.random.default_rng(i).random((2, 16, 16)), np.zeros((2, 2), int)) for i in range(count)}
    figure = demo_figure(images, labels, boxes, columns, ["circle", "square"], scored=32)
    tile, per_band = 16 * SCALE, count // 2
    band_width = LABEL_WIDTH + GAP + (per_band + 1) * tile + per_band * GAP
    band_height = TITLE_HEIGHT + 2 * (GAP + tile) + GAP + COLOUR_BAR_HEIGHT
    assert figure.shape == (CAPTION_HEIGHT + GAP + 2 * band_height + BAND_GAP, band_width, 3)
    assert written.count("input + box") == 2 and all(written.count(f"m{i}") == 1 for i in range(count))


def test_caption_counts_shown_and_scored(monkeypatch):
    import vexplain.demo.figure as module

    written = []
    real = module.text_tile
    monkeypatch.setattr(module, "text_tile", lambda text, *a, **k: written.append(text) or real(text, *a, **k))
    images, labels, boxes = scenes(2)
    demo_figure(images, labels, boxes, {"saliency": (np.ones((2, 16, 16)), np.zeros((2, 2), int))}, ["circle", "square"], scored=32)
    assert any(text.startswith("showing 2 of 32 scenes scored") for text in written)
    assert "circle" in written and "square" in written and "saliency" in written


def test_column_scale_is_shared_and_signed_maps_centre_at_zero():
    images = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    maps = np.stack([np.full((4, 4), 1.0), np.full((4, 4), 3.0)]).astype(np.float32)
    overlays, colormap, signed = column_overlays(images, maps, alpha=1.0)
    assert not signed and colormap == "jet"
    assert not np.array_equal(overlays[0], overlays[1])  # one scale for the column: 1 is its low end, 3 its high
    signed_maps = np.stack([np.zeros((4, 4)), np.full((4, 4), -2.0)]).astype(np.float32)
    overlays, colormap, signed = column_overlays(images, signed_maps, alpha=1.0)
    assert signed and colormap == "rdbu"
    assert tuple(overlays[0, 0, 0]) == RDBU_CENTRE  # zero is the diverging map's centre
