"""Non-negative matrix factorisation by coordinate descent, batched over independent matrices.

V ≈ W H with V ``(M, P)`` ≥ 0, W ``(M, k)`` ≥ 0, H ``(k, P)`` ≥ 0, minimising ½‖V − W H‖²_F. The
algorithm is scikit-learn's ``NMF(solver="cd", init="random")`` (Hsieh & Dhillon's cyclic
coordinate descent, HALS): each iteration updates W column by column, each entry
W_it ← max(0, W_it − g_it / (H Hᵀ)_tt) with g = W H Hᵀ − V Hᵀ, then H the same way on Vᵀ; it stops
after the first iteration whose summed projected-gradient magnitude is at most ``tol`` times the
first iteration's, or after ``max_iter``. Initialisation: with a = √(mean(V)/k), H = a·|n₁| then
W = a·|n₂|, n₁ ``(k, P)`` and n₂ ``(M, k)`` drawn in that order from NumPy's
``RandomState(seed)`` standard normal, as scikit-learn draws them. Each matrix of a batch runs its
own iterations and stops on its own, so batching never changes a factorisation. Computed with
NumPy in float64 on the CPU: the matrices are small (channels × positions of one layer) and the
sweeps are thousands of tiny steps, where torch's per-op overhead (and its thread pool on a busy
machine) costs 10-100× more.
"""
from __future__ import annotations

import numpy as np
import torch


def random_init(matrix: np.ndarray, components: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """W ``(M, k)`` and H ``(k, P)`` for one ``(M, P)`` matrix, as scikit-learn's ``init="random"``."""
    rows, columns = matrix.shape
    scale = float(matrix.mean()) / components
    scale = scale ** 0.5 if scale > 0 else 0.0
    rng = np.random.RandomState(seed)
    h = np.abs(scale * rng.standard_normal(size=(components, columns)))
    w = np.abs(scale * rng.standard_normal(size=(rows, components)))
    return w, h


def _sweep(data: np.ndarray, factor: np.ndarray, other: np.ndarray) -> float:
    """One coordinate-descent pass over the rows of ``factor`` ``(k, M)`` for
    ``data`` ≈ factorᵀ · other (``data`` ``(M, P)``, ``other`` ``(k, P)``), in place; returns the
    summed |projected gradient|. Each component is a contiguous row and every call is a
    two-dimensional NumPy call: their per-call cost is what a sweep of a few small components
    spends its time on."""
    gram = other @ other.T  # (k, k)
    cross = other @ data.T  # (k, M)
    violation = 0.0
    for t in range(len(factor)):
        row = factor[t]
        grad = gram[t] @ factor - cross[t]
        violation += float(np.abs(np.where(row == 0, np.minimum(grad, 0.0), grad)).sum())
        hess = float(gram[t, t])
        if hess != 0:
            np.maximum(row - grad / hess, 0.0, out=row)
    return violation


def _factorise(matrix: np.ndarray, components: int, max_iter: int, tol: float, seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """W ``(M, k)``, H ``(k, P)`` and the iterations run, for one ``(M, P)`` matrix."""
    w, h = random_init(matrix, components, seed)
    w_t = np.ascontiguousarray(w.T)  # (k, M)
    matrix_t = np.ascontiguousarray(matrix.T)
    first = 0.0
    for step in range(1, max_iter + 1):
        violation = _sweep(matrix, w_t, h) + _sweep(matrix_t, h, w_t)
        if step == 1:
            first = violation
        if first == 0 or violation <= tol * first:
            break
    return np.ascontiguousarray(w_t.T), h, step


def nmf(matrices: torch.Tensor, components: int, max_iter: int = 200, tol: float = 1e-4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """W ``(B, M, k)``, H ``(B, k, P)`` (float64, on the CPU) and the iterations each matrix ran
    ``(B,)`` for ``matrices`` ``(B, M, P)`` ≥ 0 (see the module docstring)."""
    data = matrices.detach().to("cpu", torch.float64).numpy()
    results = [_factorise(np.ascontiguousarray(matrix), components, max_iter, tol, seed) for matrix in data]
    w = np.stack([result[0] for result in results])
    h = np.stack([result[1] for result in results])
    return torch.from_numpy(w), torch.from_numpy(h), torch.tensor([result[2] for result in results], dtype=torch.int64)
