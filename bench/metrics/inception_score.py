"""Inception Score from classifier logits, in the two conventions found in papers, named explicitly.

IS = exp( E_x KL(p(y|x) ‖ p(y)) ), with p(y) the mean of p(y|x) over a split, averaged over splits.

- `inception_score_adm`: openai/guided-diffusion `evaluations/evaluator.py` (the IS in ADM, LDM, DiT, MAR...):
  softmax of the 1008-class logits pool3·W *without bias*, consecutive splits of 5000 samples (the last one may be
  shorter), no shuffle, mean over splits only.
- `inception_score_fidelity`: torch-fidelity `isc_features_to_metric`: 10 equal splits after a seeded
  `np.random.RandomState(2020).permutation`, mean ± std over splits.

Both take logits (N, C) and compute softmax / log-softmax in float64 (log-softmax avoids log 0 = -inf).
"""
from __future__ import annotations

import warnings

import numpy as np

from ..errors import UserError
from .frechet import check_features

ADM_NUM_CLASSES = 1008  # the TF-2015 Inception graph has 1008 outputs (1000 ImageNet classes + 8 unused)

# ---------------------------------------------------------------------------------------------------------
# Core
# ---------------------------------------------------------------------------------------------------------


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _split_score(log_p: np.ndarray) -> float:
    """exp(mean_x KL(p(y|x) ‖ mean_x p(y|x))) for one split of log-probabilities (n, C)."""
    p = np.exp(log_p)
    log_marginal = np.log(p.mean(axis=0, keepdims=True))  # (1, C)
    kl = (p * (log_p - log_marginal)).sum(axis=1)  # (n,)
    return float(np.exp(kl.mean()))


def _check_logits(logits, min_samples: int) -> np.ndarray:
    x = check_features(logits, "logits", min_samples=min_samples).astype(np.float64, copy=False)
    if x.shape[1] < 2:
        raise UserError(f"logits must have >= 2 classes, got shape {x.shape}",
                        hint="pass classifier logits (N, C), e.g. Inception 'logits_unbiased' (N, 1008)")
    return x


# ---------------------------------------------------------------------------------------------------------
# The two conventions
# ---------------------------------------------------------------------------------------------------------


def inception_score_adm(logits, split_size: int = 5000) -> float:
    """IS as the ADM evaluator: consecutive splits of `split_size` (last may be shorter), no shuffle, mean only."""
    x = _check_logits(logits, min_samples=2)
    n = x.shape[0]
    if x.shape[1] != ADM_NUM_CLASSES:
        warnings.warn(f"ADM Inception Score expects the {ADM_NUM_CLASSES}-class logits pool3·W (no bias) of the "
                      f"TF-2015 Inception; got {x.shape[1]} classes, so the number is not ADM-comparable",
                      UserWarning, stacklevel=2)
    if n < split_size:
        warnings.warn(f"Inception Score on {n} samples (< split size {split_size}): one split of {n}; "
                      f"ADM numbers use 50000 samples (10 splits)", RuntimeWarning, stacklevel=2)
    log_p = _log_softmax(x)
    scores = [_split_score(log_p[i:i + split_size]) for i in range(0, n, split_size)]
    return float(np.mean(scores))


def inception_score_fidelity(logits, splits: int = 10, shuffle: bool = True, seed: int = 2020) -> dict:
    """IS as torch-fidelity: `splits` equal splits after a seeded shuffle; returns {'mean', 'std', 'splits'}."""
    x = _check_logits(logits, min_samples=max(2, splits))
    n = x.shape[0]
    if shuffle:
        x = x[np.random.RandomState(seed).permutation(n)]
    log_p = _log_softmax(x)
    scores = [_split_score(log_p[i * n // splits:(i + 1) * n // splits]) for i in range(splits)]
    return {"mean": float(np.mean(scores)), "std": float(np.std(scores)), "splits": splits}
