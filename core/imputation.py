"""Noisy linear imputation (Rong et al., ROAD, ICML 2022): removed pixels take the weighted mean of
their 8 neighbours, solved jointly as one sparse linear system, plus Gaussian noise."""
from __future__ import annotations

import numpy as np

#: (row offset, column offset) → weight: 1/6 for the 4 direct neighbours, 1/12 for the diagonals
NEIGHBOURS: tuple[tuple[tuple[int, int], float], ...] = (
    ((-1, 0), 1 / 6), ((1, 0), 1 / 6), ((0, -1), 1 / 6), ((0, 1), 1 / 6),
    ((-1, -1), 1 / 12), ((-1, 1), 1 / 12), ((1, -1), 1 / 12), ((1, 1), 1 / 12),
)


def linear_impute(image: np.ndarray, remove: np.ndarray) -> np.ndarray:
    """``image`` ``(C, H, W)`` with the pixels where ``remove`` ``(H, W)`` is True replaced by the
    solution of: each removed pixel = the weighted mean (``NEIGHBOURS``, over the neighbours inside
    the image) of its neighbours, removed or not. Every channel is solved with the same matrix.
    At least one pixel must be kept."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import spsolve

    channels, height, width = image.shape
    flat = image.reshape(channels, -1).astype(np.float64)
    removed = np.flatnonzero(remove.ravel())
    if len(removed) == 0:
        return image.astype(np.float64, copy=True)
    if len(removed) == height * width:
        raise ValueError("linear imputation needs at least one kept pixel")
    variable = np.full(height * width, -1)
    variable[removed] = np.arange(len(removed))
    rows, cols = np.divmod(removed, width)
    diagonal = np.zeros(len(removed))
    rhs = np.zeros((len(removed), channels))
    entries_i, entries_j, entries_v = [], [], []
    for (dr, dc), weight in NEIGHBOURS:
        r, c = rows + dr, cols + dc
        inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
        equations = np.flatnonzero(inside)
        neighbours = r[inside] * width + c[inside]
        diagonal[equations] += weight
        known = variable[neighbours] < 0
        rhs[equations[known]] += weight * flat[:, neighbours[known]].T
        entries_i.append(equations[~known])
        entries_j.append(variable[neighbours[~known]])
        entries_v.append(np.full(int((~known).sum()), -weight))
    count = len(removed)
    i = np.concatenate([np.arange(count), *entries_i])
    j = np.concatenate([np.arange(count), *entries_j])
    v = np.concatenate([diagonal, *entries_v])
    matrix = coo_matrix((v, (i, j)), shape=(count, count)).tocsc()
    solution = np.asarray(spsolve(matrix, rhs)).reshape(count, channels)
    out = flat.copy()
    out[:, removed] = solution.T
    return out.reshape(channels, height, width)


def noisy_linear_impute(image: np.ndarray, remove: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    """``linear_impute`` plus N(0, ``noise``²) on every imputed value (drawn from ``rng`` in
    channel-major order of the removed pixels)."""
    out = linear_impute(image, remove)
    if noise > 0:
        removed = np.flatnonzero(remove.ravel())
        flat = out.reshape(out.shape[0], -1)
        flat[:, removed] += noise * rng.standard_normal((out.shape[0], len(removed)))
    return out
