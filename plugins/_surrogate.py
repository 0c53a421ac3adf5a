"""Weighted linear surrogates for KernelSHAP and LIME, in float64, no dependency.

Both fit y ≈ Zβ + b to coalitions Z ``(S, F)`` with sample weights w, the intercept b from the
w-weighted means (as scikit-learn centers with ``sample_weight``):
- ``least_squares``: min Σ w_i (y_i − z_i β − b)², the minimum-norm solution when Z is rank
  deficient (scikit-learn's ``LinearRegression``);
- ``lasso``: min (1 / 2Σw) Σ w_i (y_i − z_i β − b)² + α ‖β‖₁ (scikit-learn's ``Lasso`` objective),
  by cyclic coordinate descent until no coefficient moves more than ``tol`` (times max |β| when
  that exceeds 1, so the fit stops on scores of any scale).
"""
from __future__ import annotations

import numpy as np
import torch

from vexplain.core.notices import warn


def _centered(z: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    z, y, w = (t.detach().to("cpu", torch.float64).numpy() for t in (z, y, w))
    weights = w / w.sum()
    z_mean, y_mean = weights @ z, float(weights @ y)
    return z - z_mean, y - y_mean, weights, z_mean, y_mean


def least_squares(z: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """β ``(F,)`` of weighted least squares with an intercept."""
    zc, yc, weights, _, _ = _centered(z, y, w)
    root = np.sqrt(weights)
    beta, *_ = np.linalg.lstsq(zc * root[:, None], yc * root, rcond=None)
    return torch.from_numpy(beta)


def lasso(z: torch.Tensor, y: torch.Tensor, w: torch.Tensor, alpha: float, tol: float = 1e-10, max_sweeps: int = 10_000) -> torch.Tensor:
    """β ``(F,)`` of the weighted lasso with an intercept (``alpha`` 0 gives least squares)."""
    if alpha == 0:
        return least_squares(z, y, w)
    zc, yc, weights, _, _ = _centered(z, y, w)
    features = zc.shape[1]
    norms = weights @ (zc * zc)
    beta = np.zeros(features)
    residual = yc.copy()
    for _ in range(max_sweeps):
        largest = 0.0
        for j in range(features):
            if norms[j] == 0:
                continue
            old = beta[j]
            rho = float(weights @ (zc[:, j] * residual)) + norms[j] * old
            new = np.sign(rho) * max(abs(rho) - alpha, 0.0) / norms[j]
            if new != old:
                residual -= zc[:, j] * (new - old)
                beta[j] = new
                largest = max(largest, abs(new - old))
        if largest <= tol * max(1.0, float(np.abs(beta).max())):  # relative once |β| > 1: scores of any scale converge
            break
    else:
        warn(f"lasso did not converge in {max_sweeps} sweeps (last change {largest:.3g}); the attributions are approximate")
    return torch.from_numpy(beta)
