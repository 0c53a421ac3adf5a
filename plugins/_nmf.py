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


def _sweep(data: np.ndarray, factor: np.ndarray, other_t: np.ndarray, active: np.ndarray) -> np.ndarray:
    """One coordinate-descent pass over the columns of ``factor`` ``(B, M, k)`` for
    ``data`` ≈ factor · other_tᵀ (``data`` ``(B, M, P)``, ``other_t`` ``(B, P, k)``), in place on the
    ``active`` matrices; returns each matrix's summed |projected gradient| ``(B,)``."""
    gram = other_t.transpose(0, 2, 1) @ other_t  # (B, k, k)
    cross = data @ other_t  # (B, M, k)
    violation = np.zeros(len(data))
    for t in range(factor.shape[2]):
        column = factor[:, :, t]
        grad = (factor @ gram[:, :, t : t + 1])[:, :, 0] - cross[:, :, t]
        projected = np.where(column == 0, np.minimum(grad, 0.0), grad)
        violation += np.abs(projected).sum(axis=1)
        hess = gram[:, t, t][:, None]
        safe = np.where(hess != 0, hess, 1.0)
        updated = np.where(hess != 0, np.maximum(column - grad / safe, 0.0), column)
        factor[:, :, t] = np.where(active[:, None], updated, column)
    return violation


def nmf(matrices: torch.Tensor, components: int, max_iter: int = 200, tol: float = 1e-4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """W ``(B, M, k)``, H ``(B, k, P)`` (float64, on the CPU) and the iterations each matrix ran
    ``(B,)`` for ``matrices`` ``(B, M, P)`` ≥ 0 (see the module docstring)."""
    data = matrices.detach().to("cpu", torch.float64).numpy()
    inits = [random_init(matrix, components, seed) for matrix in data]
    w = np.stack([pair[0] for pair in inits])
    h_t = np.ascontiguousarray(np.stack([pair[1].T for pair in inits]))  # (B, P, k)
    data_t = np.ascontiguousarray(data.transpose(0, 2, 1))
    active = np.ones(len(data), dtype=bool)
    first = np.zeros(len(data))
    iterations = np.zeros(len(data), dtype=np.int64)
    for step in range(1, max_iter + 1):
        violation = _sweep(data, w, h_t, active) + _sweep(data_t, h_t, w, active)
        iterations[active] = step
        if step == 1:
            first = violation
        active &= ~((first == 0) | (violation <= tol * first))
        if not active.any():
            break
    return torch.from_numpy(w), torch.from_numpy(np.ascontiguousarray(h_t.transpose(0, 2, 1))), torch.from_numpy(iterations)
