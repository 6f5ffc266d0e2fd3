"""Aggregation of per-seed metric rows into mean ± confidence interval across seeds."""
from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .schema import METRIC_COLUMNS, label_columns, metric_row


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and the two-sided Student-t confidence interval of the mean; (m, m, m) for one value."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if x.size == 0:
        return (math.nan, math.nan, math.nan)
    m = float(x.mean())
    if x.size == 1:
        return (m, m, m)
    half = float(stats.t.ppf(0.5 + confidence / 2, df=x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return (m, m - half, m + half)


def aggregate_over_seeds(rows: Iterable[Mapping], confidence: float = 0.95) -> list[dict]:
    """For every group of rows that differ only in `seed`, one row without `seed`: mean ± t-interval, n = #seeds.

    Groups come out in the order of their first row. Groups that already have an aggregate row (a row
    without a seed label) are left alone. A group of one seed keeps that row's own interval and n (e.g. a
    bootstrap over the samples): a t-interval of one value is no interval. NaN/None values are left out of the mean and interval but
    counted in n. Labels are compared by repr, so 1 and 1.0, a None label and a missing one, differ.
    """
    rows = list(rows)
    if not rows:
        return []
    labels = label_columns(rows, exclude=("seed",))
    # one column per label: repr of the value, None (a missing label) where the row lacks it
    keys = pd.DataFrame({"metric": [r["metric"] for r in rows],
                         **{f"label:{c}": [repr(r[c]) if c in r else None for r in rows] for c in labels}})
    table = pd.DataFrame({"group": keys.groupby(list(keys.columns), sort=False, dropna=False).ngroup(),
                          "seeded": [r.get("seed") is not None for r in rows],
                          "value": [r["value"] for r in rows]})
    per_group = table.groupby("group", sort=True)
    complete = per_group["seeded"].all()              # no aggregate row already
    out = []
    for g, grp in per_group:
        if not complete[g]:
            continue
        first = rows[grp.index[0]]
        mean, lo, hi = t_interval(list(grp["value"]), confidence)
        n = len(grp)
        if n == 1 and first.get("ci_low") is not None and first.get("ci_high") is not None:
            lo, hi, n = first["ci_low"], first["ci_high"], first.get("n")    # one seed: the row's own interval
        extra = {k: v for k, v in first.items() if k not in METRIC_COLUMNS and k != "seed"}
        out.append(metric_row(first["metric"], mean, ci_low=lo, ci_high=hi, n=n,
                              higher_is_better=first.get("higher_is_better"), **extra))
    return out


def grid_optimum(values: Sequence[float], resampled: np.ndarray, confidence: float = 0.95) -> dict:
    """Where a lower-is-better metric measured over a grid (e.g. FD against η) is lowest, and how sure that is.

    `values` (k,) are the estimates at the k grid points in grid order; `resampled` (R, k) paired bootstrap draws
    of them (one resample of the underlying samples shared by every point, `bench.metrics.frechet.
    fd_paired_resamples`). Returns {'best': index of the lowest value, 'best_frac': (k,) fraction of resamples in
    which each point is the lowest, 'vs_best': (k, 3) each point's difference to the best with its recentred
    percentile interval, 'vs_first': (k, 3) the same against the first point (the grid's baseline), 'tied':
    indices not significantly worse than the best (interval of the difference reaching 0), 'shape': 'U-shaped'
    (the best strictly inside the grid and both ends significantly worse), 'undecided' (the best inside, an end
    within its interval), 'monotone' (the best at an end of the grid, some point significantly worse) or 'flat'
    (every point tied with the best)}."""
    from .metrics.stats import percentile_interval

    v = np.asarray(values, dtype=np.float64)
    res = np.asarray(resampled, dtype=np.float64)
    if res.ndim != 2 or res.shape[1] != v.size or v.size < 2:
        raise ValueError(f"need k >= 2 values and (R, k) resamples, got {v.size} and {res.shape}")
    best = int(np.argmin(v))

    def diffs(ref: int) -> np.ndarray:
        return np.array([(v[i] - v[ref], *percentile_interval(res[:, i] - res[:, ref], v[i] - v[ref], confidence,
                                                             recentre=True)) if i != ref else (0.0, 0.0, 0.0)
                         for i in range(v.size)])

    vs_best = diffs(best)
    tied = [i for i in range(v.size) if vs_best[i, 1] <= 0.0]
    worse = lambda i: vs_best[i, 1] > 0.0          # noqa: E731  (significantly above the best)
    if len(tied) == v.size:
        shape = "flat"
    elif 0 < best < v.size - 1 and worse(0) and worse(v.size - 1):
        shape = "U-shaped"
    elif best in (0, v.size - 1):
        shape = "monotone"
    else:
        shape = "undecided"      # best inside, but an end is within its interval
    frac = np.bincount(np.argmin(res, axis=1), minlength=v.size) / len(res)
    return {"best": best, "best_frac": frac, "vs_best": vs_best, "vs_first": diffs(0), "tied": tied,
            "shape": shape}
