"""Linear probe: top-1 / top-5 accuracy of multinomial logistic regression on a frozen representation.

The representation is either continuous vectors (N, D) or DLC tokens (N, L) with vocabulary V, one-hot encoded
sparsely into (N, L·V). A seeded random train/val/test split (or given index splits), standardisation
fitted on train (dense: mean and std; sparse one-hot: std only, so it stays sparse), inverse regularisation C chosen
by validation top-1 over a log grid, then the chosen model is scored on test.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import numpy as np
import scipy.sparse

from ..errors import UserError
from .frechet import check_features

DEFAULT_CS = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)

# ---------------------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------------------


def one_hot_tokens(tokens, vocab_size: int) -> scipy.sparse.csr_matrix:
    """(N, L) int tokens in [0, V) -> sparse (N, L·V) float64 one-hot, column l·V + token."""
    t = np.asarray(tokens)
    if t.ndim != 2:
        raise UserError(f"tokens must be 2-D (N, L), got shape {t.shape}", hint="pass one row of L tokens per sample")
    if not np.issubdtype(t.dtype, np.integer):
        raise UserError(f"tokens must be integers, got dtype {t.dtype}", hint="pass an int array of token ids")
    if vocab_size < 1:
        raise UserError(f"vocab_size must be >= 1, got {vocab_size}", hint="pass the DLC vocabulary size V")
    if t.size and (t.min() < 0 or t.max() >= vocab_size):
        bad = int(t.max()) if t.max() >= vocab_size else int(t.min())
        raise UserError(f"token {bad} out of range [0, {vocab_size})",
                        hint="check vocab_size (V) or the tokens (mask tokens must not be probed)")
    n, length = t.shape
    cols = (np.arange(length)[None, :] * vocab_size + t).ravel()  # (N·L,)
    rows = np.repeat(np.arange(n), length)
    data = np.ones(n * length, dtype=np.float64)
    return scipy.sparse.csr_matrix((data, (rows, cols)), shape=(n, length * vocab_size))


def random_split(n: int, val_frac: float = 0.1, test_frac: float = 0.2, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded disjoint index split {'train', 'val', 'test'} of range(n)."""
    if not (0 < val_frac < 1 and 0 < test_frac < 1 and val_frac + test_frac < 1):
        raise UserError(f"val_frac={val_frac} and test_frac={test_frac} must be in (0, 1) and sum below 1",
                        hint="e.g. val_frac=0.1, test_frac=0.2")
    perm = np.random.default_rng(seed).permutation(n)
    n_test, n_val = max(1, round(n * test_frac)), max(1, round(n * val_frac))
    return {"test": np.sort(perm[:n_test]), "val": np.sort(perm[n_test:n_test + n_val]),
            "train": np.sort(perm[n_test + n_val:])}


def _check_split(split: Mapping[str, Sequence[int]], n: int) -> dict[str, np.ndarray]:
    missing = {"train", "val", "test"} - set(split)
    if missing:
        raise UserError(f"split is missing {sorted(missing)}", hint="pass split={'train': idx, 'val': idx, 'test': idx}")
    out = {}
    for name in ("train", "val", "test"):
        idx = np.asarray(split[name])
        if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
            raise UserError(f"split[{name!r}] must be a non-empty 1-D integer index array", hint="pass index arrays")
        if idx.min() < 0 or idx.max() >= n:
            raise UserError(f"split[{name!r}] has indices outside [0, {n})", hint="indices refer to rows of the input")
        out[name] = idx
    return out


# ---------------------------------------------------------------------------------------------------------
# Probe
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeResult:
    """Test accuracies of the linear probe with the C chosen on validation, plus what it was fitted on."""
    top1: float
    top5: float
    C: float
    val_top1: dict = field(default_factory=dict)  # C -> validation top-1
    n_train: int = 0
    n_val: int = 0
    n_test: int = 0
    n_classes: int = 0
    n_features: int = 0


def _topk_accuracy(scores: np.ndarray, classes: np.ndarray, y: np.ndarray, k: int) -> float:
    k = min(k, scores.shape[1])
    top = classes[np.argsort(-scores, axis=1, kind="stable")[:, :k]]  # (n, k)
    return float((top == y[:, None]).any(1).mean())


def linear_probe(x, labels, *, vocab_size: Optional[int] = None, split: Optional[Mapping] = None,
                 val_frac: float = 0.1, test_frac: float = 0.2, Cs: Sequence[float] = DEFAULT_CS, seed: int = 0,
                 max_iter: int = 1000, standardize: bool = True) -> ProbeResult:
    """Top-1/top-5 test accuracy of a multinomial logistic-regression probe on `x`.

    x: (N, D) continuous features, or (N, L) int tokens when `vocab_size` is given (one-hot, sparse).
    labels: (N,) class labels. split: optional {'train', 'val', 'test'} index arrays (else seeded random split).
    top-5 is reported as top-min(5, classes).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    if vocab_size is not None:
        feats = one_hot_tokens(x, vocab_size)
    else:
        feats = check_features(x, "probe features", min_samples=3).astype(np.float64, copy=False)
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != feats.shape[0]:
        raise UserError(f"labels must be 1-D with one label per sample: {feats.shape[0]} samples, labels shape "
                        f"{y.shape}", hint="pass labels of shape (N,)")
    idx = random_split(y.shape[0], val_frac, test_frac, seed) if split is None else _check_split(split, y.shape[0])
    classes_train = np.unique(y[idx["train"]])
    if classes_train.size < 2:
        raise UserError(f"the training split has {classes_train.size} class; a probe needs >= 2",
                        hint="use more samples or a different split")
    x_tr, x_va, x_te = feats[idx["train"]], feats[idx["val"]], feats[idx["test"]]
    if standardize:
        scaler = StandardScaler(with_mean=not scipy.sparse.issparse(feats)).fit(x_tr)
        x_tr, x_va, x_te = scaler.transform(x_tr), scaler.transform(x_va), scaler.transform(x_te)
    best, val_top1 = None, {}
    for c in Cs:
        clf = LogisticRegression(C=float(c), max_iter=max_iter, random_state=seed).fit(x_tr, y[idx["train"]])
        acc = _topk_accuracy(clf.predict_proba(x_va), clf.classes_, y[idx["val"]], 1)
        val_top1[float(c)] = acc
        if best is None or acc > val_top1[best[0]]:
            best = (float(c), clf)
    c_best, clf = best
    scores = clf.predict_proba(x_te)  # (n_test, classes)
    return ProbeResult(
        top1=_topk_accuracy(scores, clf.classes_, y[idx["test"]], 1),
        top5=_topk_accuracy(scores, clf.classes_, y[idx["test"]], 5),
        C=c_best, val_top1=val_top1, n_train=int(idx["train"].size), n_val=int(idx["val"].size),
        n_test=int(idx["test"].size), n_classes=int(np.unique(y).size), n_features=int(feats.shape[1]),
    )
