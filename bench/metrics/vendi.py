"""Vendi score (Friedman & Dieng 2023) of order q with the cosine (linear, L2-normalised) kernel.

VS_q = exp(H_q(λ)), λ the eigenvalues of K/n with K = X̂ X̂ᵀ (n × n, unit diagonal). H_1 is Shannon entropy,
H_q = log Σ λ^q / (1 − q), H_∞ = −log max λ. K/n and X̂ᵀX̂/n (d × d) share their nonzero spectrum, so when n > d the
dual path is used (as vendi-score's `score_dual`): O(n d² + d³) instead of O(n² d + n³). Float64 throughout.
Upstream `score_X` ignores its `q` argument (it calls `score_K(K, q=1)`); here q is always applied.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.linalg

from ..errors import UserError
from .frechet import check_features

# ---------------------------------------------------------------------------------------------------------
# Entropy of a spectrum
# ---------------------------------------------------------------------------------------------------------


def _order(q) -> float:
    if isinstance(q, str):
        if q.lower() not in ("inf", "infinity"):
            raise UserError(f"Vendi order q={q!r} is not a number", hint="use q = 1, 2 or 'inf'")
        return math.inf
    q = float(q)
    if not q >= 0:  # also catches NaN
        raise UserError(f"Vendi order q must be >= 0, got {q}", hint="use q = 1, 2 or 'inf'")
    return q


def vendi_from_eigenvalues(eigenvalues, q=1) -> float:
    """exp(H_q) of a spectrum summing to 1; eigenvalues below rounding level (relative to the largest) are dropped."""
    q = _order(q)
    w = np.asarray(eigenvalues, dtype=np.float64)
    lam_max = float(w.max())
    w = w[w > lam_max * w.size * np.finfo(np.float64).eps]  # rounding noise of eigvalsh, incl. tiny negatives
    if q == math.inf:
        return float(1.0 / lam_max)
    if q == 1.0:
        return float(np.exp(-(w * np.log(w)).sum()))
    return float(np.exp(np.log((w ** q).sum()) / (1.0 - q)))


# ---------------------------------------------------------------------------------------------------------
# Score
# ---------------------------------------------------------------------------------------------------------


def vendi_score(x, q=1, normalize: bool = True) -> float:
    """Vendi score of order q of the rows of x (n, d) under the cosine kernel (rows L2-normalised when `normalize`)."""
    x = check_features(x, "features", min_samples=1).astype(np.float64)
    n, d = x.shape
    norms = np.linalg.norm(x, axis=1)
    if normalize:
        if (norms == 0).any():
            raise UserError(f"features have {int((norms == 0).sum())} all-zero rows (first: row "
                            f"{int(np.flatnonzero(norms == 0)[0])}); the cosine kernel is undefined for them",
                            hint="drop or fix all-zero feature vectors")
        x /= norms[:, None]
    elif not np.allclose(norms, 1.0, rtol=1e-6):
        raise UserError("with normalize=False the rows must have unit L2 norm (k(x, x) = 1)",
                        hint="pass normalize=True or L2-normalise the features")
    if n > d:
        gram = x.T @ x / n  # (d, d) dual
    else:
        gram = x @ x.T / n  # (n, n)
    w = scipy.linalg.eigh(gram, eigvals_only=True, driver="evd", check_finite=False)
    return vendi_from_eigenvalues(w, q)
