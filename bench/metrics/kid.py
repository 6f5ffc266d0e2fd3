"""Kernel Inception Distance (Bińkowski et al. 2018): unbiased MMD² with the cubic polynomial kernel.

k(x, y) = (x·y / d + 1)³; `subsets` random subsets of `subset_size` drawn without replacement from each set
(seeded `np.random.RandomState`, fake first then real per subset, as torch-fidelity draws input1 then input2);
reports the mean and std of the per-subset unbiased MMD². Float64 throughout.
"""
from __future__ import annotations

import warnings
from typing import Optional

import numpy as np

from ..errors import UserError
from .frechet import check_features, check_same_dim

# ---------------------------------------------------------------------------------------------------------
# Kernel and estimator
# ---------------------------------------------------------------------------------------------------------


def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int = 3, gamma: Optional[float] = None,
                      coef0: float = 1.0) -> np.ndarray:
    """(γ x·yᵀ + c)^degree with γ = 1/d by default. (n, d), (m, d) -> (n, m)."""
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    return (x @ y.T * gamma + coef0) ** degree


def mmd2_unbiased(k_xx: np.ndarray, k_xy: np.ndarray, k_yy: np.ndarray) -> float:
    """Unbiased MMD²: off-diagonal means of K_XX and K_YY minus twice the full mean of K_XY."""
    m, n = k_xx.shape[0], k_yy.shape[0]
    sum_xx = k_xx.sum() - np.trace(k_xx)
    sum_yy = k_yy.sum() - np.trace(k_yy)
    return float(sum_xx / (m * (m - 1)) + sum_yy / (n * (n - 1)) - 2.0 * k_xy.sum() / (m * n))


# ---------------------------------------------------------------------------------------------------------
# KID
# ---------------------------------------------------------------------------------------------------------


def kid(*, real, fake, subsets: int = 100, subset_size: int = 1000, degree: int = 3, gamma: Optional[float] = None,
        coef0: float = 1.0, seed: int = 2020) -> dict:
    """KID of `fake` vs `real` features: {'mean', 'std', 'subsets', 'subset_size'} over seeded random subsets.

    With fewer than `subset_size` samples in either set, the subset size shrinks to the smaller set (as clean-fid)
    and a warning states the numbers; published KID uses 100 subsets of 1000.
    """
    x = check_features(fake, "fake features", min_samples=2).astype(np.float64, copy=False)
    y = check_features(real, "real features", min_samples=2).astype(np.float64, copy=False)
    check_same_dim(y, x)
    if subsets < 1 or subset_size < 2:
        raise UserError(f"KID needs subsets >= 1 and subset_size >= 2, got {subsets} and {subset_size}",
                        hint="use the defaults (100 subsets of 1000)")
    m = min(subset_size, x.shape[0], y.shape[0])
    if m < subset_size:
        warnings.warn(f"KID: {x.shape[0]} fake and {y.shape[0]} real samples, fewer than the subset size "
                      f"{subset_size}; using subsets of {m}", RuntimeWarning, stacklevel=2)
    rng = np.random.RandomState(seed)
    mmds = np.empty(subsets)
    for i in range(subsets):
        xs = x[rng.choice(x.shape[0], m, replace=False)]  # (m, d)
        ys = y[rng.choice(y.shape[0], m, replace=False)]  # (m, d)
        k_xx = polynomial_kernel(xs, xs, degree, gamma, coef0)
        k_yy = polynomial_kernel(ys, ys, degree, gamma, coef0)
        k_xy = polynomial_kernel(xs, ys, degree, gamma, coef0)
        mmds[i] = mmd2_unbiased(k_xx, k_xy, k_yy)
    return {"mean": float(mmds.mean()), "std": float(mmds.std()), "subsets": subsets, "subset_size": m}
