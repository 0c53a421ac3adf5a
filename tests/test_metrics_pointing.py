"""Pointing game: hits and misses on hand-made maps, masks and boxes; tolerance; the centre baseline."""
from __future__ import annotations

import numpy as np
import pytest

import vexplain as vx
from models import images, seeded_cnn
from vexplain.plugins.metric_pointing_game import default_tolerance

SIZE = 16


def point_map(row: int, col: int, n: int = 1) -> np.ndarray:
    maps = np.zeros((n, SIZE, SIZE), np.float32)
    maps[:, row, col] = 1.0
    return maps


def run(maps, masks, **options):
    x = images(len(maps), size=SIZE)
    return vx.evaluate(seeded_cnn(), x, maps, metric="pointing_game", masks=masks, **options)


def reference_hit(peak: tuple[int, int], mask: np.ndarray, tolerance: int) -> float:
    """Straightforward: is any mask pixel within Euclidean distance ``tolerance`` of the peak?"""
    for r in range(mask.shape[0]):
        for c in range(mask.shape[1]):
            if mask[r, c] and (r - peak[0]) ** 2 + (c - peak[1]) ** 2 <= tolerance**2:
                return 1.0
    return 0.0


def test_hits_and_misses_with_a_box():
    box = np.array([[2, 3, 6, 8]])  # x0, y0, x1, y1: rows 3..7, columns 2..5
    assert run(point_map(3, 2), box, tolerance=0).score.tolist() == [1.0]  # corner inside
    assert run(point_map(7, 5), box, tolerance=0).score.tolist() == [1.0]  # far corner inside
    assert run(point_map(8, 5), box, tolerance=0).score.tolist() == [0.0]  # one row below: end-exclusive
    assert run(point_map(3, 6), box, tolerance=0).score.tolist() == [0.0]


@pytest.mark.parametrize("tolerance, expected", [(0, 0.0), (2, 0.0), (3, 1.0), (4, 1.0)])
def test_tolerance_is_euclidean_pixels(tolerance, expected):
    mask = np.zeros((1, SIZE, SIZE), bool)
    mask[0, 10, 10] = True
    # the peak is 3 rows above the only mask pixel: a hit from tolerance 3 on
    assert run(point_map(7, 10), mask, tolerance=tolerance).score.tolist() == [expected]
    # diagonal (2, 2): distance 2.83, a hit at 3 but not at 2
    diagonal = run(point_map(8, 8), mask, tolerance=tolerance).score.tolist()
    assert diagonal == [1.0 if tolerance >= 3 else 0.0]


def test_ties_take_the_first_maximum_in_row_major_order():
    maps = point_map(1, 1) + point_map(12, 12)
    mask = np.zeros((1, SIZE, SIZE), bool)
    mask[0, 12, 12] = True
    assert run(maps, mask, tolerance=0).score.tolist() == [0.0]
    mask[0, 1, 1] = True
    assert run(maps, mask, tolerance=0).score.tolist() == [1.0]


def test_centre_baseline_is_reported_beside_every_result():
    masks = np.zeros((2, SIZE, SIZE), bool)
    masks[0, 8, 8] = True  # the centre (H // 2, W // 2)
    masks[1, 0, 0] = True
    ev = run(point_map(0, 0, 2), masks, tolerance=0)
    assert ev.values["baseline_hit"].tolist() == [1.0, 0.0]
    assert ev.values["hit"].tolist() == [0.0, 1.0]
    assert ev.summary() == {"hit": 0.5, "baseline_hit": 0.5}


def test_matches_a_reference_on_random_maps_and_masks():
    rng = np.random.default_rng(11)
    maps = rng.standard_normal((6, SIZE, SIZE)).astype(np.float32)
    masks = rng.random((6, SIZE, SIZE)) > 0.97
    masks[:, 0, 0] = True  # never empty
    for tolerance in (0, 1, 3):
        ev = run(maps, masks, tolerance=tolerance)
        peaks = [np.unravel_index(np.argmax(m), m.shape) for m in maps]
        expected = [reference_hit(p, k, tolerance) for p, k in zip(peaks, masks)]
        assert ev.score.tolist() == expected
        assert ev.options["tolerance"] == tolerance


def test_default_tolerance_scales_zhangs_15_pixels():
    assert default_tolerance(224, 224) == 15 and default_tolerance(64, 64) == 4 and default_tolerance(16, 40) == 1
    ev = run(point_map(3, 3), np.array([[0, 0, 2, 2]]))
    assert ev.options["tolerance"] == 1 and ev.score.tolist() == [0.0]  # (3, 3) is 1.41 px from (1, 1)


def test_masks_are_required_and_checked():
    with pytest.raises(vx.InvalidInput, match="needs ground truth"):
        run(point_map(0, 0), None)
    with pytest.raises(vx.InvalidInput, match=r"masks must be \(N, H, W\)"):
        run(point_map(0, 0), np.zeros((1, 8, 8), bool))
    with pytest.raises(vx.InvalidInput, match=r"images \[0\] have none"):
        run(point_map(0, 0), np.zeros((1, SIZE, SIZE), bool))
