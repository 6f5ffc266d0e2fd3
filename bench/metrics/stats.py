"""Seeded percentile-bootstrap confidence intervals for any metric over per-sample features.

A resample draws each sample array's rows with replacement (independently per array, or with shared indices when
`paired`); the interval is the (α/2, 1 − α/2) percentiles of the statistic over resamples. The point value is
the statistic on the original data. n and the number of resamples are recorded with the interval.

`recentre=True` (what `metric_ci` and the Fréchet bootstrap use) shifts that interval by the estimate minus the
resamples' median, so it sits on the estimate. Set-level metrics (Fréchet distance, precision/recall, coverage,
Vendi, KID) are biased by the duplicates a with-replacement resample holds (~37 % of the rows): measured on
Gaussian features (1000 real × 500 fake, d = 64, 2026-12-03) the plain percentile interval of FD was [6.49, 7.35]
around an estimate of 4.51, recall's [0.815, 0.870] around 0.904, KID's [0.020, 0.030] around 0.005 — intervals
that do not contain their own value and say nothing about the estimator's spread at this n. Recentring keeps the
resampling spread and puts it where the estimate is; the spread itself stays approximate (there, 1.7× the
sample-to-sample standard deviation of FD measured on 20 fresh fake sets, 0.6× that of coverage).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np

from ..errors import UserError

# ---------------------------------------------------------------------------------------------------------
# Bootstrap
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfidenceInterval:
    """A point value with its percentile-bootstrap interval and how it was obtained."""
    value: float
    low: float
    high: float
    confidence: float
    n: tuple  # sample sizes of the resampled arrays
    n_resamples: int
    seed: int
    method: str = "percentile"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["n"] = list(self.n)
        return d


def _rows(a):
    try:
        return len(a)
    except TypeError:
        raise UserError(f"bootstrap samples must be arrays with one row per sample, got {type(a).__name__}",
                        hint="pass numpy arrays (N, ...)") from None


def bootstrap_ci(statistic: Callable[..., float], *samples, n_resamples: int = 1000, confidence: float = 0.95,
                 seed: int = 0, paired: bool = False, fixed: Sequence = (), recentre: bool = False,
                 bounds: tuple[float, float] = (-np.inf, np.inf)) -> ConfidenceInterval:
    """Percentile-bootstrap CI of `statistic(*resampled_samples, *fixed)`.

    samples: arrays resampled by rows; fixed: extra arguments passed unchanged (e.g. precomputed reference stats);
    recentre / bounds: see `percentile_interval`.
    """
    if not samples:
        raise UserError("bootstrap_ci needs at least one sample array", hint="pass the per-sample features")
    if not 0 < confidence < 1:
        raise UserError(f"confidence must be in (0, 1), got {confidence}", hint="e.g. 0.95")
    if n_resamples < 2:
        raise UserError(f"n_resamples must be >= 2, got {n_resamples}", hint="use >= 1000 for a 95% interval")
    arrays = [np.asarray(s) for s in samples]
    ns = tuple(_rows(a) for a in arrays)
    if min(ns) < 2:
        raise UserError(f"bootstrap needs >= 2 samples per array, got sizes {ns}", hint="use more samples")
    if paired and len(set(ns)) != 1:
        raise UserError(f"paired bootstrap needs equal sizes, got {ns}", hint="pass paired=False")
    value = float(statistic(*arrays, *fixed))
    rng = np.random.default_rng(seed)
    stats = np.empty(n_resamples)
    for b in range(n_resamples):
        if paired:
            idx = rng.integers(0, ns[0], ns[0])
            resampled = [a[idx] for a in arrays]
        else:
            resampled = [a[rng.integers(0, n, n)] for a, n in zip(arrays, ns)]
        stats[b] = statistic(*resampled, *fixed)
    low, high = percentile_interval(stats, value, confidence, recentre=recentre, bounds=bounds)
    return ConfidenceInterval(value=value, low=low, high=high, confidence=confidence, n=ns, n_resamples=n_resamples,
                              seed=seed, method="percentile, recentred" if recentre else "percentile")


def percentile_interval(stats: np.ndarray, value: float, confidence: float, *, recentre: bool = False,
                        bounds: tuple[float, float] = (-np.inf, np.inf)) -> tuple[float, float]:
    """(low, high): the (α/2, 1 − α/2) percentiles of the resampled statistics `stats`; with `recentre`, shifted by
    value − median(stats) so the interval sits on the estimate (see the module doc), then clipped to `bounds`
    (the statistic's range, e.g. (0, 1) for a fraction)."""
    alpha = 1.0 - confidence
    low, high = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    if recentre:
        shift = value - float(np.median(stats))
        low, high = low + shift, high + shift
    return float(np.clip(low, *bounds)), float(np.clip(high, *bounds))
