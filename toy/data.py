"""The toy data: N isotropic 2-D Gaussians on a √N×√N grid (DLC paper, Section 3).

Neighbouring centres are `spacing` apart (1.0) and every component has variance `variance` (0.1)
per coordinate. The grid is centred on the origin. The exact log-density is available, which the
KL estimators need.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.special import logsumexp


def grid_side(n_modes: int) -> int:
    side = math.isqrt(int(n_modes))
    if n_modes < 1 or side * side != n_modes:
        raise ValueError(f"n_modes must be a perfect square (a √N×√N grid), got {n_modes}; e.g. 9, 121, 400, 900")
    return side


def grid_centers(n_modes: int, spacing: float = 1.0) -> np.ndarray:
    """(N, 2) float64 mode centres, row-major over the grid, centred on the origin."""
    side = grid_side(n_modes)
    ticks = (np.arange(side, dtype=np.float64) - (side - 1) / 2.0) * spacing
    gx, gy = np.meshgrid(ticks, ticks, indexing="xy")
    return np.stack([gx.ravel(), gy.ravel()], axis=1)


def sample_mixture(n: int, n_modes: int, rng: np.random.Generator, variance: float = 0.1,
                   spacing: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """n samples (n, 2) float64 and their component indices (n,) int64, equal mixture weights."""
    centers = grid_centers(n_modes, spacing)
    labels = rng.integers(0, n_modes, size=n)
    x = centers[labels] + rng.standard_normal((n, 2)) * math.sqrt(variance)
    return x, labels.astype(np.int64)


def log_density(x: np.ndarray, n_modes: int, variance: float = 0.1, spacing: float = 1.0,
                chunk: int = 8192) -> np.ndarray:
    """Exact log p_data(x) for points x (m, 2), in float64."""
    centers = grid_centers(n_modes, spacing)
    x = np.asarray(x, dtype=np.float64)
    out = np.empty(len(x))
    norm = -math.log(n_modes) - math.log(2 * math.pi * variance)
    for s in range(0, len(x), chunk):
        d2 = ((x[s:s + chunk, None, :] - centers[None, :, :]) ** 2).sum(-1)   # (m, N)
        out[s:s + chunk] = logsumexp(-0.5 * d2 / variance, axis=1) + norm
    return out
