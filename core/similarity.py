"""Similarity of two maps: Spearman rank correlation and SSIM, as used by the sanity checks."""
from __future__ import annotations

import numpy as np

#: SSIM constants (Wang et al., 2004) for data in [0, 1]
SSIM_K1, SSIM_K2, SSIM_SIGMA, SSIM_TRUNCATE = 0.01, 0.03, 1.5, 3.5


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps' values (average ranks for ties); NaN when either map
    is constant, where it is undefined (a plausible 0.0 would read as "the map changed")."""
    from scipy.stats import rankdata

    x, y = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    rx, ry = rankdata(x), rankdata(y)
    rx -= rx.mean()
    ry -= ry.mean()
    return float((rx * ry).sum() / np.sqrt((rx * rx).sum() * (ry * ry).sum()))


def minmax(a: np.ndarray) -> np.ndarray:
    """``a`` scaled to [0, 1]; a constant map becomes zeros."""
    a = np.asarray(a, dtype=np.float64)
    span = np.ptp(a)
    return np.zeros_like(a) if span == 0 else (a - a.min()) / span


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean structural similarity of two maps after min-max scaling each to [0, 1]: Gaussian
    window σ = 1.5 (truncated at 3.5σ, an 11 × 11 window), K1 = 0.01, K2 = 0.03, data range 1,
    edges reflected."""
    from scipy.ndimage import gaussian_filter

    x, y = minmax(a), minmax(b)

    def blur(v: np.ndarray) -> np.ndarray:
        return gaussian_filter(v, SSIM_SIGMA, truncate=SSIM_TRUNCATE, mode="reflect")

    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cxy = blur(x * y) - mx * my
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    index = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(index.mean())
