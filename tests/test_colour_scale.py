"""Signed maps on a diverging scale centred at zero, unsigned ones min-max as before, and the colour
bar strip the CLI adds below its overlays: exact pixel checks on hand-made maps."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

import vexplain as vx
from vexplain.cli.main import main
from vexplain.core.colour_scale import COLOUR_BAR_HEIGHT, RDBU_CENTRE, colour, heatmap, is_signed, value_range, with_colour_bar
from vexplain.core.errors import InvalidOption
from vexplain.core.explanation import Explanation
from vexplain.core.postprocess import colorize, normalize

BLUE_END, RED_END = (5, 48, 97), (103, 0, 31)  # rdbu's first and last anchors
RDBU_07 = (244, 165, 130)  # rdbu's anchor at t = 0.7


def explanation(*maps: np.ndarray) -> Explanation:
    stacked = np.stack([np.asarray(m, dtype=np.float32) for m in maps])
    n = len(stacked)
    return Explanation(maps=stacked, targets=np.zeros(n, np.int64), scores=np.zeros((n, 2), np.float32), method="test")


def jet(index: int) -> tuple[int, ...]:
    """OpenCV's jet table entry ``index`` as RGB."""
    bgr = cv2.applyColorMap(np.array([[index]], dtype=np.uint8), cv2.COLORMAP_JET)[0, 0]
    return tuple(int(c) for c in bgr[::-1])


SIGNED = np.array([[-2.0, 0.0, 0.8]])  # max|m| = 2: t = 0, 0.5, 0.7


def test_a_signed_map_is_diverging_and_zero_is_the_centre():
    assert is_signed(SIGNED) and value_range(SIGNED, True) == (-2.0, 2.0)
    heat = heatmap(SIGNED)
    assert [tuple(int(c) for c in p) for p in heat[0]] == [BLUE_END, RDBU_CENTRE, RDBU_07]
    assert RDBU_CENTRE == (247, 247, 247)


def test_a_signed_map_in_an_opencv_colormap_is_centred_too():
    heat = heatmap(SIGNED, colormap="jet")
    # t = 0, 0.5, 0.7 → table indices round(255 t) = 0, 128, 178
    assert [tuple(int(c) for c in p) for p in heat[0]] == [jet(0), jet(128), jet(178)]


def test_an_unsigned_map_is_min_max_in_jet_exactly_as_before():
    unsigned = np.array([[1.0, 2.0, 3.0], [0.5, 0.25, 0.0]], dtype=np.float32)
    assert not is_signed(unsigned)
    np.testing.assert_array_equal(heatmap(unsigned), colorize(normalize(unsigned[None])[0], "jet"))
    assert tuple(int(c) for c in heatmap(unsigned)[0, 2]) == jet(255)


def test_signed_can_be_forced_either_way():
    assert [tuple(int(c) for c in p) for p in heatmap(SIGNED, signed=False)[0]] == [jet(0), jet(182), jet(255)]  # (0+2)/2.8·255 = 182.1
    positive = np.array([[0.0, 1.0]])
    assert [tuple(int(c) for c in p) for p in heatmap(positive, signed=True)[0]] == [RDBU_CENTRE, RED_END]
    with pytest.raises(InvalidOption, match="signed must be"):
        heatmap(positive, signed="yes")


def test_rounding_negatives_do_not_make_a_map_signed():
    assert not is_signed(np.array([1.0, -1e-9]))
    assert is_signed(np.array([1.0, -1e-3]))
    assert not is_signed(np.zeros(4)) and not is_signed(np.array([np.nan, 1.0]))


def test_each_map_of_a_batch_is_decided_alone_so_batching_changes_nothing():
    unsigned = np.array([[0.0, 1.0, 2.0]])
    both = explanation(SIGNED, unsigned)
    np.testing.assert_array_equal(both.heatmaps()[0], explanation(SIGNED).heatmaps()[0])
    np.testing.assert_array_equal(both.heatmaps()[1], explanation(unsigned).heatmaps()[0])
    grey = np.full((2, 1, 3, 3), 100, np.uint8)
    np.testing.assert_array_equal(both.overlay(grey, alpha=1.0), both.heatmaps())
    assert tuple(int(c) for c in both.overlay(grey, alpha=0.5)[0, 0, 1]) == (174, 174, 174)  # (247 + 100) / 2 = 173.5 → 174


def test_unknown_colormap_names_rdbu_among_the_choices():
    with pytest.raises(InvalidOption, match="rdbu"):
        colour(np.zeros(2), "no_such_map")


def test_the_colour_bar_strip_states_the_range():
    picture = np.full((5, 41, 3), 9, np.uint8)
    raw = np.linspace(-3.0, 1.0, 41 * 5).reshape(5, 41)
    barred = with_colour_bar(picture, raw)
    assert barred.shape == (5 + COLOUR_BAR_HEIGHT, 41, 3)
    np.testing.assert_array_equal(barred[:5], picture)
    strip = barred[5:]
    assert (strip[:4] == 255).all()  # margin
    assert tuple(int(c) for c in strip[4, 0]) == BLUE_END and tuple(int(c) for c in strip[13, 40]) == RED_END
    assert tuple(int(c) for c in strip[8, 20]) == RDBU_CENTRE  # column 20 of 41 is t = 0.5: zero
    labels = strip[14:]
    dark = labels.min(axis=2) < 128
    assert dark[:, :12].any() and dark[:, 15:26].any() and dark[:, -12:].any()  # "-3", "0", "3"
    unsigned = with_colour_bar(picture, np.abs(raw))
    assert tuple(int(c) for c in unsigned[9, 0]) == jet(0) and tuple(int(c) for c in unsigned[9, 40]) == jet(255)


def test_save_adds_the_colour_bar_only_when_asked(tmp_path):
    exp = explanation(SIGNED)
    plain, _ = exp.save(tmp_path, "plain")
    barred, _ = exp.save(tmp_path, "barred", colour_bar=True)
    assert cv2.imread(str(plain)).shape == (1, 3, 3)
    assert cv2.imread(str(barred)).shape == (1 + COLOUR_BAR_HEIGHT, 3, 3)


def test_cli_overlays_carry_a_colour_bar_centred_for_signed_methods(tmp_path, capsys):
    from vexplain.demo.model import demo_adapter

    image = np.zeros((33, 33, 3), np.uint8)
    image[8:25, 8:25] = (200, 40, 40)
    cv2.imwrite(str(tmp_path / "square.png"), image)
    weights = tmp_path / "demo.pt"
    import torch

    torch.save(demo_adapter().model.state_dict(), weights)
    for method, signed in (("input_x_gradient", True), ("gradcam", False)):
        code = main(["explain", "vexplain.demo.model:build", str(tmp_path / "square.png"), "--weights", str(weights),
                     "--method", method, "--size", "33", "33", "--out", str(tmp_path / "out")])
        assert code == 0, capsys.readouterr().err
        raw = np.load(tmp_path / "out" / f"square.{method}.npy")
        assert is_signed(raw) == signed, (method, raw.min(), raw.max())
        written = cv2.cvtColor(cv2.imread(str(tmp_path / "out" / f"square.{method}.png")), cv2.COLOR_BGR2RGB)
        assert written.shape == (33 + COLOUR_BAR_HEIGHT, 33, 3)
        middle = tuple(int(c) for c in written[33 + 8, 16])
        assert middle == (RDBU_CENTRE if signed else jet(128))
