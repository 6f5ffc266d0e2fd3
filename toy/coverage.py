"""Direct mode-coverage measures for samples of the grid mixture (no density estimate needed)."""
from __future__ import annotations

import math

import numpy as np

from .data import grid_centers


def nearest_mode(x: np.ndarray, n_modes: int, spacing: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest grid centre and the distance to it, for points x (m, 2). Exact, O(m)."""
    side = math.isqrt(n_modes)
    half = (side - 1) / 2.0
    ij = np.clip(np.rint(np.asarray(x, dtype=np.float64) / spacing + half), 0, side - 1).astype(np.int64)
    idx = ij[:, 1] * side + ij[:, 0]                 # row-major like grid_centers (x varies fastest)
    d = np.linalg.norm(x - grid_centers(n_modes, spacing)[idx], axis=1)
    return idx, d


def mode_coverage(x: np.ndarray, n_modes: int, variance: float = 0.1, spacing: float = 1.0,
                  radius_sigmas: float = 3.0, min_count: int = 1) -> tuple[float, float]:
    """(fraction of modes that receive at least `min_count` samples within radius_sigmas·σ of them,
    fraction of samples within radius_sigmas·σ of their nearest mode)."""
    idx, d = nearest_mode(x, n_modes, spacing)
    inside = d <= radius_sigmas * math.sqrt(variance)
    counts = np.bincount(idx[inside], minlength=n_modes)
    return float((counts >= min_count).mean()), float(inside.mean())
