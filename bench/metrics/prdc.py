"""k-NN manifold metrics: improved precision/recall (Kynkäänniemi et al. 2019) and density/coverage (Naeem et al. 2020).

Each sample's manifold radius is the distance to its k-th nearest neighbour in its own set, self excluded
((k+1)-th smallest distance, self = 0).
- precision: fraction of fake samples inside some real ball;  recall: fraction of real samples inside some fake ball.
  k = 3 and `<=` as the ADM evaluator (and torch-fidelity's `prc`).
- density: (1/k) · mean over fake of the number of real balls containing it;  coverage: fraction of real samples
  whose nearest fake sample lies inside their ball. k = 5 and strict `<` as Naeem et al.'s reference code.

Distances are squared Euclidean (same ordering), float64, computed in row blocks of fake × real so that
10k × 10k never holds more than `max_block_elems` distances at once.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from ..errors import UserError
from .frechet import check_features, check_same_dim

DEFAULT_BLOCK_ELEMS = 1 << 24  # 16M float64 distances (128 MiB) per block

# ---------------------------------------------------------------------------------------------------------
# Distances and radii
# ---------------------------------------------------------------------------------------------------------


def _to_torch(x, name: str, min_samples: int, device) -> torch.Tensor:
    arr = check_features(x, name, min_samples=min_samples)
    return torch.as_tensor(np.asarray(arr, dtype=np.float64), device=device)


def _rows(n_cols: int, max_block_elems: int) -> int:
    return max(1, max_block_elems // max(n_cols, 1))


def _sq_dists(a: torch.Tensor, b: torch.Tensor, a_sq: torch.Tensor, b_sq: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances (n, m) from the expansion ‖a‖² + ‖b‖² − 2 a·b, clipped at 0."""
    return (a_sq[:, None] + b_sq[None, :] - 2.0 * (a @ b.T)).clamp_min_(0.0)


def knn_radii(x: torch.Tensor, ks: tuple[int, ...], max_block_elems: int = DEFAULT_BLOCK_ELEMS) -> dict[int, torch.Tensor]:
    """Squared distance from each row of x (n, d) to its k-th nearest other row, for each k in `ks`."""
    n = x.shape[0]
    kmax = max(ks)
    sq = (x * x).sum(1)
    out = torch.empty(n, kmax + 1, dtype=x.dtype, device=x.device)
    step = _rows(n, max_block_elems)
    for s in range(0, n, step):
        e = min(s + step, n)
        d2 = _sq_dists(x[s:e], x, sq[s:e], sq)  # (b, n)
        r = torch.arange(e - s, device=x.device)
        d2[r, r + s] = 0.0  # self distance exactly 0, so the (k+1)-th smallest excludes self
        out[s:e] = torch.topk(d2, kmax + 1, dim=1, largest=False, sorted=True).values
    return {k: out[:, k] for k in ks}


# ---------------------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------------------


def prdc(*, real, fake, k_pr: int = 3, k_dc: int = 5, max_block_elems: int = DEFAULT_BLOCK_ELEMS,
         device: Optional[str | torch.device] = None) -> dict:
    """Precision, recall, F-score (k=`k_pr`, `<=`) and density, coverage (k=`k_dc`, `<`) in one blocked pass."""
    if k_pr < 1 or k_dc < 1:
        raise UserError(f"neighbourhood sizes must be >= 1, got k_pr={k_pr}, k_dc={k_dc}", hint="use k=3 and k=5")
    kmax = max(k_pr, k_dc)
    r = _to_torch(real, "real features", kmax + 1, device)
    f = _to_torch(fake, "fake features", kmax + 1, device)
    check_same_dim(r, f)
    ks = tuple(sorted({k_pr, k_dc}))
    rad_r = knn_radii(r, ks, max_block_elems)
    rad_f = knn_radii(f, (k_pr,), max_block_elems)[k_pr]
    r_sq, f_sq = (r * r).sum(1), (f * f).sum(1)
    nf, nr = f.shape[0], r.shape[0]
    precision_hit = torch.zeros(nf, dtype=torch.bool, device=r.device)
    density_count = torch.zeros(nf, dtype=torch.float64, device=r.device)
    recall_hit = torch.zeros(nr, dtype=torch.bool, device=r.device)
    nearest_fake = torch.full((nr,), float("inf"), dtype=torch.float64, device=r.device)
    step = _rows(nr, max_block_elems)
    for s in range(0, nf, step):
        e = min(s + step, nf)
        d2 = _sq_dists(f[s:e], r, f_sq[s:e], r_sq)  # (b, nr): fake rows × real columns
        precision_hit[s:e] = (d2 <= rad_r[k_pr][None, :]).any(1)
        recall_hit |= (d2 <= rad_f[s:e, None]).any(0)
        density_count[s:e] = (d2 < rad_r[k_dc][None, :]).sum(1).to(torch.float64)
        nearest_fake = torch.minimum(nearest_fake, d2.min(0).values)
    precision = float(precision_hit.double().mean())
    recall = float(recall_hit.double().mean())
    return {
        "precision": precision,
        "recall": recall,
        "f_score": 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0,
        "density": float(density_count.mean()) / k_dc,
        "coverage": float((nearest_fake < rad_r[k_dc]).double().mean()),
        "n_real": nr,
        "n_fake": nf,
    }


def precision_recall(*, real, fake, k: int = 3, max_block_elems: int = DEFAULT_BLOCK_ELEMS, device=None) -> dict:
    """Improved precision/recall (k-NN, self excluded, `<=`, as ADM): {'precision', 'recall', 'f_score'}."""
    out = prdc(real=real, fake=fake, k_pr=k, k_dc=k, max_block_elems=max_block_elems, device=device)
    return {key: out[key] for key in ("precision", "recall", "f_score")}


def density_coverage(*, real, fake, k: int = 5, max_block_elems: int = DEFAULT_BLOCK_ELEMS, device=None) -> dict:
    """Density and coverage (Naeem et al., k-NN radii of real samples, strict `<`): {'density', 'coverage'}."""
    out = prdc(real=real, fake=fake, k_pr=k, k_dc=k, max_block_elems=max_block_elems, device=device)
    return {key: out[key] for key in ("density", "coverage")}
